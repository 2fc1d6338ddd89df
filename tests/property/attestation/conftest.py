"""Session-wide pieces for the key-release properties (Hypothesis needs non-function fixtures).

moto runs as in the unit tests: their ``moto_url`` fixture serves both.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from unit.attestation.conftest import moto_url

from emulator.daemon.key_release import KeyReleaseStack
from emulator.nitro.pki import TestPki

__all__ = ["moto_url"]

ACCOUNT = "123456789012"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-instance"
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-api"
INSTANCE_KEY = "ASIAPROPINSTANCE0001"
API_KEY = "ASIAPROPAPIROLE00001"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    # One recipient key for every example: generating RSA-2048 costs ~40 ms, and which key
    # the document carries plays no part in the properties checked here.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stack(moto_url: str) -> Iterator[KeyReleaseStack]:
    directory = Path(tempfile.mkdtemp(prefix="krp-"))  # not tmp_path: sockets need short paths
    try:
        with KeyReleaseStack.start(
            backend=moto_url,
            runtime_dir=directory,
            pki=TestPki.create(),
            identities={INSTANCE_KEY: INSTANCE_ROLE, API_KEY: API_ROLE},
        ) as started:
            yield started
    finally:
        shutil.rmtree(directory, ignore_errors=True)
