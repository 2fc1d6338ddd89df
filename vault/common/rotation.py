"""The ``rotate`` operation as API and enclave both see it: parameters and the reply's proof.

A rotation asks the enclave to open every field of a vault under its current key and
seal it under a new public key. The request's parameters (signed exactly by the API's
authorization) are the new public key, the new suite and a *reply key*: the public half
of a key pair the API makes for this one request, on the vault's current curve.

The enclave answers ``fields`` = ``{name: base64(enc || ct)}`` plus :data:`PROOF_KEY`,
an HMAC over the vault id, the new key and every returned value, keyed with
HKDF(ECDH(vault private key, reply key)). The API computes the same secret as
ECDH(reply private key, vault public key). Nobody else holds either private key, so a
parent that rewrites the answer (to plant values of its own choosing, sealed to the new
public key it saw in the request) cannot produce a proof that verifies, and the API
stores nothing. The reply key is fresh per request, so an old answer does not verify
either.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault.common import hpke
from vault.common.suites import Suite

ROTATE_OPERATION = "rotate"
#: Base64 of the new public key (DER SubjectPublicKeyInfo, as KMS returns and the table stores it).
NEW_PUBLIC_KEY = "new_public_key"
#: Base64 of the new suite's 10-byte RFC 9180 suite id.
NEW_SUITE_ID = "new_suite_id"
#: Base64 of the API's one-request public key (uncompressed SEC1 point on the vault's current curve).
REPLY_KEY = "reply_key"
PARAMETERS = frozenset({NEW_PUBLIC_KEY, NEW_SUITE_ID, REPLY_KEY})
#: Key of the proof in the reply's ``fields``; vault field names never start with ``_``.
PROOF_KEY = "_proof"
_PROOF_INFO = b"nitro-vault/rotation-reply/1"
_PROOF_DOMAIN = b"nitro-vault/rotation-proof/1\n"


class RotationError(ValueError):
    """A rotation parameter or proof is unusable; ``str()`` names it, never a value."""


def decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RotationError(f"{what} is not base64") from None


def encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_reply_key(suite: Suite) -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A one-request key pair on ``suite``'s curve and its public half as the parameter carries it."""
    private = ec.generate_private_key(suite.kem_params.curve())
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return private, encode(point)


def load_reply_key(suite: Suite, value: str) -> ec.EllipticCurvePublicKey:
    try:
        return hpke.load_public_key(suite, decode(value, REPLY_KEY))
    except hpke.HpkeError:
        raise RotationError(f"{REPLY_KEY} is not a public key on the vault's curve") from None


def _proof_key(shared_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PROOF_INFO).derive(shared_secret)


def _proof_message(vault_id: str, new_public_key: str, fields: Mapping[str, str]) -> bytes:
    document = {
        "vault_id": vault_id,
        "new_public_key": new_public_key,
        "fields": sorted([name, value] for name, value in fields.items()),
    }
    return _PROOF_DOMAIN + json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def proof(shared_secret: bytes, vault_id: str, new_public_key: str, fields: Mapping[str, str]) -> str:
    """The proof over a rotation's answer, from the ECDH secret both ends compute."""
    tag = hmac.digest(
        _proof_key(shared_secret), _proof_message(vault_id, new_public_key, fields), hashlib.sha256
    )
    return encode(tag)


def enclave_secret(vault_key: ec.EllipticCurvePrivateKey, reply_key: ec.EllipticCurvePublicKey) -> bytes:
    return vault_key.exchange(ec.ECDH(), reply_key)


def api_secret(reply_key: ec.EllipticCurvePrivateKey, vault_public_key: ec.EllipticCurvePublicKey) -> bytes:
    return reply_key.exchange(ec.ECDH(), vault_public_key)


def verify_proof(
    shared_secret: bytes, vault_id: str, new_public_key: str, fields: Mapping[str, str], received: str
) -> bool:
    expected = proof(shared_secret, vault_id, new_public_key, fields)
    return hmac.compare_digest(expected.encode("ascii"), received.encode("ascii", "replace"))
