"""RFC 9180 HPKE, base mode, single-shot seal/open (sequence number 0).

A narrow typed surface over ``cryptography``'s ECDH and AEAD primitives and the
standard library's HMAC. It is small on purpose: the vault only ever needs base
mode with DHKEM over the NIST curves. It is checked against RFC 9180 vectors, the
upstream vault's vector and an independent implementation (pyhpke) in the tests.

Per-field cost is dominated by one ECDH; everything that can be computed once per
recipient key (the private key object, the serialized public key) is cached on
:class:`Recipient`, which is what the enclave creates once per request.
"""

from __future__ import annotations

import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from vault.common.suites import AEAD_KEY_LEN, KDF_HASH, Aead, Suite

_VERSION = b"HPKE-v1"
_MODE_BASE = b"\x00"
_NONCE_LEN = 12


class HpkeError(Exception):
    """Sealing or opening failed (bad key, bad encapsulation or authentication failure)."""


def _extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return hmac.digest(salt, ikm, hash_name)


def _expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), hash_name)
        out += block
        counter += 1
    return out[:length]


def _labeled_extract(hash_name: str, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(hash_name, salt, _VERSION + suite_id + label + ikm)


def _labeled_expand(
    hash_name: str, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
) -> bytes:
    return _expand(hash_name, prk, struct.pack(">H", length) + _VERSION + suite_id + label + info, length)


def _kem_suite_id(suite: Suite) -> bytes:
    return b"KEM" + struct.pack(">H", suite.kem)


def _shared_secret(suite: Suite, dh: bytes, kem_context: bytes) -> bytes:
    params = suite.kem_params
    sid = _kem_suite_id(suite)
    eae_prk = _labeled_extract(params.hash_name, sid, b"", b"eae_prk", dh)
    return _labeled_expand(params.hash_name, sid, eae_prk, b"shared_secret", kem_context, params.n_secret)


def _key_schedule(suite: Suite, shared_secret: bytes, info: bytes) -> tuple[bytes, bytes]:
    h = KDF_HASH[suite.kdf]
    sid = suite.suite_id
    psk_id_hash = _labeled_extract(h, sid, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(h, sid, b"", b"info_hash", info)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(h, sid, shared_secret, b"secret", b"")
    key = _labeled_expand(h, sid, secret, b"key", context, AEAD_KEY_LEN[suite.aead])
    base_nonce = _labeled_expand(h, sid, secret, b"base_nonce", context, _NONCE_LEN)
    return key, base_nonce


def _aead(suite: Suite, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if suite.aead == Aead.CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    return AESGCM(key)


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def load_public_key(suite: Suite, public_key: bytes) -> ec.EllipticCurvePublicKey:
    """Accept a DER SubjectPublicKeyInfo or an uncompressed SEC1 point for ``suite``'s curve."""
    curve = suite.kem_params.curve()
    try:
        if public_key[:1] == b"\x04" and len(public_key) == suite.n_enc:
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, public_key)
        key = load_der_public_key(public_key)
    except (ValueError, TypeError) as exc:
        raise HpkeError(f"invalid public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve.name:
        raise HpkeError(f"public key is not on {curve.name}")
    return key


def seal(
    suite: Suite,
    public_key: bytes | ec.EllipticCurvePublicKey,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    *,
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[bytes, bytes]:
    """Encrypt ``plaintext`` to ``public_key``; return ``(enc, ciphertext_with_tag)``.

    ``ephemeral_key`` exists for deterministic test vectors only.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name != suite.kem_params.curve().name:
            raise HpkeError(f"public key is not on {suite.kem_params.curve().name}")
        pk_r = public_key
    else:
        pk_r = load_public_key(suite, public_key)
    sk_e = ephemeral_key or ec.generate_private_key(suite.kem_params.curve())
    enc = _point(sk_e.public_key())
    dh = sk_e.exchange(ec.ECDH(), pk_r)
    shared = _shared_secret(suite, dh, enc + _point(pk_r))
    key, nonce = _key_schedule(suite, shared, info)
    return enc, _aead(suite, key).encrypt(nonce, plaintext, aad)


class Recipient:
    """An HPKE recipient key; create once, then :meth:`open` any number of ciphertexts."""

    __slots__ = ("_key", "_pk_rm", "suite")

    def __init__(self, suite: Suite, private_key: ec.EllipticCurvePrivateKey) -> None:
        if private_key.curve.name != suite.kem_params.curve().name:
            raise HpkeError(f"private key is not on {suite.kem_params.curve().name}")
        self.suite = suite
        self._key = private_key
        self._pk_rm = _point(private_key.public_key())

    @classmethod
    def from_scalar(cls, suite: Suite, scalar: bytes) -> Recipient:
        """Build from the raw big-endian private scalar (``Nsk`` bytes)."""
        if len(scalar) != suite.n_sk:
            raise HpkeError(f"private key must be {suite.n_sk} bytes for {suite}, got {len(scalar)}")
        try:
            key = ec.derive_private_key(int.from_bytes(scalar, "big"), suite.kem_params.curve())
        except ValueError as exc:
            raise HpkeError(f"invalid private key: {exc}") from exc
        return cls(suite, key)

    @property
    def public_point(self) -> bytes:
        return self._pk_rm

    def open(self, enc: bytes, ciphertext: bytes, info: bytes, aad: bytes) -> bytes:
        suite = self.suite
        if len(enc) != suite.n_enc:
            raise HpkeError(f"encapsulated key must be {suite.n_enc} bytes, got {len(enc)}")
        try:
            pk_e = ec.EllipticCurvePublicKey.from_encoded_point(suite.kem_params.curve(), enc)
        except ValueError as exc:
            raise HpkeError(f"invalid encapsulated key: {exc}") from exc
        dh = self._key.exchange(ec.ECDH(), pk_e)
        shared = _shared_secret(suite, dh, enc + self._pk_rm)
        key, nonce = _key_schedule(suite, shared, info)
        try:
            return _aead(suite, key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise HpkeError("authentication failed") from None


def open_(suite: Suite, scalar: bytes, enc: bytes, ciphertext: bytes, info: bytes, aad: bytes) -> bytes:
    """One-shot open; prefer :class:`Recipient` when opening several ciphertexts."""
    return Recipient.from_scalar(suite, scalar).open(enc, ciphertext, info, aad)
