"""COSE_Sign1 with ES384 (RFC 9052), the envelope of Nitro attestation documents.

A Nitro document is the untagged array ``[protected, unprotected, payload, signature]``
where ``protected`` is the CBOR encoding of ``{1: -35}`` (alg ES384) in a byte string,
``unprotected`` is an empty map and ``signature`` is the raw ``r || s`` (48 + 48 bytes).
The signed bytes are the ``Sig_structure``::

    ["Signature1", protected, external_aad (empty bstr), payload]

Verification accepts the tagged form (tag 18) too, requires ES384 in the protected
header, refuses ``crit`` parameters it does not understand (all of them), and checks
the signature with the given P-384 public key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_CRIT = 2
ALG_ES384 = -35
_COORDINATE = 48


class CoseError(ValueError):
    """Malformed COSE_Sign1, unsupported algorithm, or a signature that does not verify."""


@dataclass(frozen=True)
class Sign1:
    protected: bytes
    #: CBOR map keys: COSE labels are ints or text, but a decoded map may hold any key.
    protected_header: Mapping[object, object]
    unprotected_header: Mapping[object, object]
    payload: bytes
    signature: bytes

    def sig_structure(self, external_aad: bytes = b"") -> bytes:
        return sig_structure(self.protected, self.payload, external_aad)


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    return cbor2.dumps(["Signature1", protected, external_aad, payload])


def _check_p384(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(key.curve, ec.SECP384R1):
        raise CoseError("ES384 needs a P-384 key")


def sign1(payload: bytes, key: ec.EllipticCurvePrivateKey, *, tagged: bool = False) -> bytes:
    """Sign ``payload``; the untagged form is what the Nitro NSM emits."""
    _check_p384(key)
    protected = cbor2.dumps({HEADER_ALG: ALG_ES384})
    der = key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
    message: list[object] | cbor2.CBORTag = [protected, {}, payload, signature]
    if tagged:
        message = cbor2.CBORTag(COSE_SIGN1_TAG, message)
    return cbor2.dumps(message)


def decode_sign1(message: bytes) -> Sign1:
    """Parse without verifying (the verifier first needs the certificate inside the payload)."""
    try:
        decoded = cbor2.loads(message)
    except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError) as exc:
        raise CoseError(f"not CBOR: {type(exc).__name__}") from None
    if isinstance(decoded, cbor2.CBORTag):
        if decoded.tag != COSE_SIGN1_TAG:
            raise CoseError(f"unexpected CBOR tag {decoded.tag}")
        decoded = decoded.value
    # cbor2 hands back a tagged array as a tuple (tag contents are immutable).
    if not isinstance(decoded, list | tuple) or len(decoded) != 4:
        raise CoseError("not a COSE_Sign1 array")
    protected, unprotected, payload, signature = decoded
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping):
        raise CoseError("malformed COSE_Sign1 headers")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise CoseError("COSE_Sign1 payload and signature must be byte strings")
    try:
        header = cbor2.loads(protected) if protected else {}
    except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError):
        raise CoseError("the protected header is not CBOR") from None
    if not isinstance(header, Mapping):
        raise CoseError("the protected header is not a map")
    return Sign1(protected, header, unprotected, payload, signature)


def verify_sign1(message: bytes | Sign1, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Verify an ES384 COSE_Sign1 and return its payload."""
    sign1_message = message if isinstance(message, Sign1) else decode_sign1(message)
    _check_p384(public_key)
    header = sign1_message.protected_header
    if header.get(HEADER_ALG) != ALG_ES384:
        raise CoseError("the protected header does not name ES384")
    if HEADER_CRIT in header:
        raise CoseError("critical header parameters are not supported")
    if HEADER_ALG in sign1_message.unprotected_header:
        raise CoseError("the algorithm must be a protected header parameter")
    signature = sign1_message.signature
    if len(signature) != 2 * _COORDINATE:
        raise CoseError("an ES384 signature is 96 bytes")
    r = int.from_bytes(signature[:_COORDINATE], "big")
    s = int.from_bytes(signature[_COORDINATE:], "big")
    try:
        public_key.verify(
            encode_dss_signature(r, s), sign1_message.sig_structure(), ec.ECDSA(hashes.SHA384())
        )
    except InvalidSignature:
        raise CoseError("the signature does not verify") from None
    return sign1_message.payload
