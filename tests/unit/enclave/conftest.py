"""Fixtures for the enclave's unit tests: the upstream vector, keys and a handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.enclave.handler import RequestHandler

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load_upstream() -> dict[str, Any]:
    return json.loads((VECTORS / "upstream_vault.json").read_text())


@pytest.fixture(scope="session")
def upstream() -> dict[str, Any]:
    return load_upstream()


@pytest.fixture(scope="session")
def upstream_der(upstream) -> bytes:
    return base64.b64decode(upstream["private_key_pkcs8_b64"])


@pytest.fixture
def decryptor() -> LocalKeyDecryptor:
    return LocalKeyDecryptor()


@pytest.fixture
def vault_key(decryptor) -> VaultKey:
    return decryptor.create_vault_key("v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL")


@pytest.fixture
def upstream_key(decryptor, upstream, upstream_der) -> VaultKey:
    """The spec's vault key, wrapped by the local key decryptor for the spec's vault id."""
    from vault.common.suites import P384_SHA384_AES256GCM

    return VaultKey(
        vault_id=upstream["vault_id"],
        suite=P384_SHA384_AES256GCM,
        public_key=base64.b64decode(upstream["public_key_spki_b64"]),
        encrypted_private_key=decryptor.encrypt_private_key(upstream_der, upstream["vault_id"]),
    )


@pytest.fixture
def handler(decryptor) -> RequestHandler:
    return RequestHandler(decryptor)
