"""What the API and the enclave agree on for blind-index tokens (keyed digests for search).

A token is ``base64url(HMAC-SHA256(K_f, normalize(f, value)))`` with a per-field key
``K_f`` that only the enclave can derive: HKDF-SHA256 over the deployment's index
private key, which KMS releases to an attested enclave only (like a vault key). The
API never holds it, so a token cannot be checked against guessed values (all 10^9
SSNs) outside the enclave, and every token the enclave makes is for a request the API
signed (operation :data:`INDEX_OPERATION`).

The index key pair is made and stored like a vault's, under :data:`INDEX_KEY_ID`, an id
that no vault can have (it fails the vault id pattern), so no decrypt route can name it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Final

#: The enclave operation that answers tokens instead of plaintext.
INDEX_OPERATION: Final = "index"
#: The reserved id of the index key pair: its KMS encryption-context value and its HPKE ``info``.
INDEX_KEY_ID: Final = "blind-index"
#: Fields a deployment can search, with how their values are normalised (see :func:`normalize`).
SEARCHABLE_FIELDS: Final = ("ssn9", "email")
#: ``target`` of an index request that writes no vault (a search).
SEARCH_TARGET: Final = "search"

# Signed parameters of an index request.
PARAM_DEPLOYMENT: Final = "deployment"
PARAM_TARGET: Final = "target"
#: SHA-256 of the sealed inputs: a parent holding a genuine authorization cannot swap in
#: values of its own (the authorization covers field names, not their ciphertexts).
PARAM_SEALED: Final = "sealed_sha256"
INDEX_PARAMETERS: Final = frozenset({PARAM_DEPLOYMENT, PARAM_TARGET, PARAM_SEALED})

#: A deployment id: base64url of 16 random bytes (22 characters).
DEPLOYMENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{22}")
#: A token: base64url (no padding) of 32 bytes.
TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
#: HKDF ``info`` prefix; the deployment id and the field name follow, NUL-separated.
HKDF_INFO_PREFIX: Final = b"nitro-vault blind-index v1"


def normalize(field: str, value: str) -> str:
    """The form a value is indexed in: stripped, and e-mail addresses lower-cased.

    The API's validators already strip; the enclave normalises again because it trusts
    no one to have done it.
    """
    text = value.strip()
    return text.lower() if field == "email" else text


def sealed_digest(fields: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the sealed inputs as sent (name -> base64 of ``enc || ct``), canonical JSON."""
    canonical = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def hkdf_info(deployment_id: str, field: str) -> bytes:
    """``info`` of the per-field key: neither part can hold a NUL, so the encoding is unambiguous."""
    return HKDF_INFO_PREFIX + b"\x00" + deployment_id.encode("ascii") + b"\x00" + field.encode("ascii")


#: The CEL function that answers a field's token during a decrypt.
HMAC_FUNCTION: Final = "hmac_sha256"
# Signed parameters of a decrypt whose expressions call HMAC_FUNCTION: the index key's KMS
# ciphertext (base64) and the deployment id. A decrypt takes no other parameters.
PARAM_INDEX_KEY: Final = "index_key"
PARAM_INDEX_DEPLOYMENT: Final = "index_deployment"
DECRYPT_INDEX_PARAMETERS: Final = frozenset({PARAM_INDEX_KEY, PARAM_INDEX_DEPLOYMENT})
