"""One field sealed as the vault stores it (spec 2.3, decision D5), for the API and the enclave.

``info`` is the vault id and ``aad`` the lower-cased field name, so a ciphertext cannot
be moved to another field or another vault; the stored value is ``enc || ct`` (the
binary encoding, version 2). The API seals what clients write; the enclave re-seals
opened fields when a vault's key is rotated. Both call :func:`seal_field`, so what one
writes the other's reader opens.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from vault.common import hpke
from vault.common.suites import Suite

#: Encoding version of values written by :func:`seal_field`: DynamoDB Binary ``enc || ct``.
BINARY_ENCODING_VERSION = 2


def field_aad(name: str) -> bytes:
    """The associated data of field ``name``: its lower-cased UTF-8 name (what the enclave opens with)."""
    return name.lower().encode("utf-8")


def seal_field(
    suite: Suite,
    public_key: bytes | ec.EllipticCurvePublicKey,
    vault_id: str,
    name: str,
    plaintext: bytes,
) -> bytes:
    """``enc || ct`` of ``plaintext`` for field ``name`` of vault ``vault_id`` under ``public_key``."""
    enc, ct = hpke.seal(suite, public_key, vault_id.encode("utf-8"), field_aad(name), plaintext)
    return enc + ct
