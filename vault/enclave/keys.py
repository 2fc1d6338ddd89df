"""A vault's private key, from the DER PKCS#8 that KMS returns to an HPKE recipient.

KMS ``Decrypt`` yields the plaintext of ``GenerateDataKeyPairWithoutPlaintext``'s
private key: a DER PKCS#8 ``PrivateKeyInfo`` (RFC 5208) wrapping an EC key (upstream
spec 2.4). The HPKE private key is that key's scalar, as fixed-length big-endian bytes.

Python cannot wipe immutable ``bytes``; what it can do is keep as few copies as
possible and drop references at once. :func:`recipient_from_pkcs8` therefore hands the
parsed key object straight to :class:`~vault.common.hpke.Recipient` without making a
scalar copy; the key then lives in OpenSSL memory, which OpenSSL clears when it frees
an EC private key.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key

from vault.common.hpke import HpkeError, Recipient
from vault.common.suites import Suite
from vault.enclave import ber

_PREFIX = "unable to decode PKCS#8 private key"


class KeyFormatError(ValueError):
    """The private key is not a PKCS#8 EC key for the suite's curve; ``str()`` is safe to log."""


def _check_pkcs8_shape(der: bytes) -> None:
    # OpenSSL also accepts the "traditional" SEC1 ECPrivateKey; KMS and upstream (ring's
    # from_pkcs8) only speak PKCS#8. The two differ right after the version INTEGER:
    # PKCS#8 continues with the AlgorithmIdentifier SEQUENCE, SEC1 with an OCTET STRING.
    # BerError texts name the structure that is wrong, never the bytes.
    try:
        info = ber.decode(der)
    except ber.BerError as exc:
        raise KeyFormatError(f"{_PREFIX}: malformed DER ({exc})") from None
    if not info.is_(ber.UNIVERSAL, ber.SEQUENCE) or not info.constructed:
        raise KeyFormatError(f"{_PREFIX}: not a DER SEQUENCE")
    try:
        # v1 (RFC 5208) or v2 (RFC 5958, with the public key).
        version = ber.integer(info.child(0, what="version"), what="version")
        algorithm = info.child(1, what="algorithm")
    except ber.BerError:
        raise KeyFormatError(f"{_PREFIX}: not a PKCS#8 PrivateKeyInfo") from None
    if version not in (0, 1):
        raise KeyFormatError(f"{_PREFIX}: not a PKCS#8 PrivateKeyInfo")
    if not algorithm.is_(ber.UNIVERSAL, ber.SEQUENCE) or not algorithm.constructed:
        raise KeyFormatError(f"{_PREFIX}: not a PKCS#8 PrivateKeyInfo (SEC1 or other format)")


def load_private_key(der: bytes, suite: Suite) -> ec.EllipticCurvePrivateKey:
    """Parse ``der`` as PKCS#8 and check that the key is on ``suite``'s curve."""
    _check_pkcs8_shape(der)
    try:
        key = load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # cryptography's messages describe the failure, never the key bytes.
        raise KeyFormatError(f"{_PREFIX}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFormatError(f"{_PREFIX}: not an EC key")
    expected = suite.kem_params.curve().name
    if key.curve.name != expected:
        raise KeyFormatError(f"{_PREFIX}: key is on {key.curve.name}, suite {suite} needs {expected}")
    return key


def private_scalar(der: bytes, suite: Suite) -> bytes:
    """The key's private scalar as ``Nsk`` big-endian bytes (32/48/66)."""
    key = load_private_key(der, suite)
    return key.private_numbers().private_value.to_bytes(suite.n_sk, "big")


def recipient_from_pkcs8(der: bytes, suite: Suite) -> Recipient:
    """An HPKE recipient for ``suite`` holding the key in ``der``."""
    key = load_private_key(der, suite)
    try:
        return Recipient(suite, key)
    except HpkeError as exc:
        raise KeyFormatError(f"{_PREFIX}: {exc}") from None
