"""Blind-index tokens inside the enclave: the per-field key and the token, for the ``index``
operation and for CEL's ``hmac_sha256`` (see :mod:`vault.common.blind_index`).

::

    K_f     = HKDF-SHA256(ikm = index private key (PKCS#8 DER, as KMS released it), salt = none,
                          info = "nitro-vault blind-index v1" 0x00 deployment 0x00 field)
    token_f = base64url(HMAC-SHA256(K_f, normalize(field, value)))

A decrypt whose expressions use ``hmac_sha256`` runs them with the released index key
bound to :data:`current_index_key` for that request only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vault.common.blind_index import hkdf_info, normalize

_KEY_LENGTH = 32


def field_key(private_key: bytes, deployment_id: str, field_name: str) -> bytes:
    """``K_f``: the per-deployment, per-field HMAC key derived from the index private key."""
    return HKDF(
        algorithm=hashes.SHA256(), length=_KEY_LENGTH, salt=None, info=hkdf_info(deployment_id, field_name)
    ).derive(private_key)


def token(key: bytes, field_name: str, value: str) -> str:
    """The token of ``value`` in ``field_name`` under ``K_f`` = ``key``."""
    mac = hmac.new(key, normalize(field_name, value).encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class IndexKey:
    """The deployment's released index private key and its deployment id."""

    private_key: bytes = field(repr=False)
    deployment_id: str

    def token(self, field_name: str, value: str) -> str:
        return token(field_key(self.private_key, self.deployment_id, field_name), field_name, value)


#: The index key of the request being evaluated; ``None`` outside such a request.
current_index_key: ContextVar[IndexKey | None] = ContextVar("current_index_key", default=None)


@contextmanager
def index_key_bound(key: IndexKey | None) -> Iterator[None]:
    """Bind ``key`` as :data:`current_index_key` for the block (``None``: leave it unbound)."""
    reset = current_index_key.set(key)
    try:
        yield
    finally:
        current_index_key.reset(reset)
