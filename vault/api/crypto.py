"""Per-field HPKE sealing as the enclave expects it (spec 2.3).

``info`` is the vault id and ``aad`` the field name, so a ciphertext cannot be moved to
another field or another vault. Values are stored in the binary form ``enc || ct``
(decision D5: writes are always binary, whatever the vault's ``_v``). The sealing
itself is :func:`vault.common.sealing.seal_field`, which the enclave uses too when it
re-seals a vault's fields under a new key.
"""

from __future__ import annotations

from collections.abc import Mapping

from vault.common import hpke
from vault.common.sealing import seal_field
from vault.common.suites import Suite

SSN9 = "ssn9"
SSN4 = "ssn4"


def seal_fields(
    suite: Suite, public_key_der: bytes, vault_id: str, values: Mapping[str, str]
) -> dict[str, bytes]:
    """Seal ``values`` (field name -> plaintext, in schema order) for the vault's public key.

    Sealing ``ssn9`` also seals its last four characters as ``ssn4``; a ``ssn4`` that
    comes later in ``values`` (schema order puts it after ``ssn9``) replaces the derived one.
    """
    public_key = hpke.load_public_key(suite, public_key_der)

    def seal(field: str, value: str) -> bytes:
        return seal_field(suite, public_key, vault_id, field, value.encode("utf-8"))

    sealed: dict[str, bytes] = {}
    for field, value in values.items():
        sealed[field] = seal(field, value)
        if field == SSN9:
            sealed[SSN4] = seal(SSN4, value[-4:])
    return sealed
