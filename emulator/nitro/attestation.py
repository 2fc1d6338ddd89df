"""Nitro attestation documents: the payload format, signing, and what a verifier checks.

The payload is a CBOR map (``aws-nitro-enclaves-nsm-api`` ``AttestationDoc``)::

    module_id: text, digest: "SHA384", timestamp: uint (ms since the epoch),
    pcrs: {index: bstr(48)}, certificate: bstr (DER), cabundle: [bstr (DER), ...],
    public_key: bstr / null, user_data: bstr / null, nonce: bstr / null

in that key order, absent optionals written as null, signed as COSE_Sign1/ES384
(:mod:`emulator.nitro.cose`) by the enclave's certificate, which chains through
``cabundle`` (root, regional, zonal, instance) to the attestation root. Current Nitro
hardware writes the top-level map with indefinite length (``bf`` ... ``ff``; documents
from 2024 and before have a definite ``a9``), ``pcrs`` and ``cabundle`` with definite
length; the emulator writes what current hardware writes and reads both.

:func:`verify_document` does what KMS does before it looks at a key policy: the
syntactic rules of ``attestation_process.md`` section 3.2.2, the certificate chain to
the *trusted* root (the root copy inside the bundle is not trusted), the signature, and
freshness of ``timestamp``. Each refusal carries a short ``reason`` for tests and logs.
:class:`DocumentVerifier` does the same and remembers what it verified (see there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.nitro.cose import CoseError, decode_sign1, sign1, verify_sign1
from emulator.nitro.pki import PkiError, verify_chain
from vault.enclave.nsm import MAX_NONCE, MAX_PUBLIC_KEY, MAX_USER_DATA

DIGEST = "SHA384"
PCR_LENGTHS = (32, 48, 64)
MAX_PCRS = 32
MAX_CERTIFICATE = 1024
#: How far in the future a timestamp may lie (clock skew between NSM and verifier).
FUTURE_SKEW = dt.timedelta(seconds=60)
_MANDATORY = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")
_INDEFINITE_MAP = b"\xbf"
_BREAK = b"\xff"


class AttestationError(ValueError):
    """A document that must not be trusted; ``reason`` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AttestationDocument:
    module_id: str
    timestamp_ms: int
    pcrs: Mapping[int, bytes]
    certificate: bytes = field(repr=False)
    cabundle: tuple[bytes, ...] = field(repr=False)
    public_key: bytes | None = field(default=None, repr=False)
    user_data: bytes | None = field(default=None, repr=False)
    nonce: bytes | None = field(default=None, repr=False)
    digest: str = DIGEST

    @property
    def timestamp(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, dt.UTC)

    def pcr_hex(self, index: int) -> str | None:
        value = self.pcrs.get(index)
        return value.hex() if value is not None else None

    def to_cbor(self, *, indefinite: bool = True) -> bytes:
        """The payload as the NSM writes it; ``indefinite=False`` gives the older definite-length map."""
        fields: dict[str, Any] = {
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp": self.timestamp_ms,
            "pcrs": dict(sorted(self.pcrs.items())),
            "certificate": self.certificate,
            "cabundle": list(self.cabundle),
            "public_key": self.public_key,
            "user_data": self.user_data,
            "nonce": self.nonce,
        }
        if not indefinite:
            return cbor2.dumps(fields)
        # cbor2 writes only definite-length maps: frame the entries by hand.
        entries = b"".join(cbor2.dumps(key) + cbor2.dumps(value) for key, value in fields.items())
        return _INDEFINITE_MAP + entries + _BREAK

    def sign(self, key: ec.EllipticCurvePrivateKey, *, indefinite: bool = True) -> bytes:
        return sign1(self.to_cbor(indefinite=indefinite), key)

    @classmethod
    def from_cbor(cls, payload: bytes) -> AttestationDocument:
        """Parse a payload and apply the syntactic rules; raise :class:`AttestationError`."""
        try:
            data = cbor2.loads(payload)
        except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError):
            raise AttestationError("malformed", "the payload is not CBOR") from None
        if not isinstance(data, dict):
            raise AttestationError("malformed", "the payload is not a map")
        unknown = set(data) - set(_MANDATORY) - set(_OPTIONAL)
        if unknown:
            raise AttestationError("malformed", f"unknown fields {sorted(map(str, unknown))}")
        for name in _MANDATORY:
            if data.get(name) is None:
                raise AttestationError("malformed", f"the mandatory field {name} is missing")
        return cls(
            module_id=_module_id(data["module_id"]),
            digest=_digest(data["digest"]),
            timestamp_ms=_timestamp(data["timestamp"]),
            pcrs=_pcrs(data["pcrs"]),
            certificate=_bytes(data["certificate"], "certificate", 1, MAX_CERTIFICATE),
            cabundle=_cabundle(data["cabundle"]),
            public_key=_optional(data.get("public_key"), "public_key", 1, MAX_PUBLIC_KEY),
            user_data=_optional(data.get("user_data"), "user_data", 0, MAX_USER_DATA),
            nonce=_optional(data.get("nonce"), "nonce", 0, MAX_NONCE),
        )


def _module_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise AttestationError("malformed", "module_id must be a non-empty text string")
    return value


def _digest(value: Any) -> str:
    if value != DIGEST:
        raise AttestationError("malformed", "digest must be SHA384")
    return DIGEST


def _timestamp(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value >= 1 << 64:
        raise AttestationError("malformed", "timestamp must be a positive 64-bit integer")
    return value


def _bytes(value: Any, name: str, low: int, high: int) -> bytes:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise AttestationError("malformed", f"{name} must be a byte string of {low} to {high} bytes")
    return value


def _optional(value: Any, name: str, low: int, high: int) -> bytes | None:
    return None if value is None else _bytes(value, name, low, high)


def _pcrs(value: Any) -> dict[int, bytes]:
    if not isinstance(value, dict) or not 1 <= len(value) <= MAX_PCRS:
        raise AttestationError("malformed", "pcrs must be a map of 1 to 32 entries")
    pcrs: dict[int, bytes] = {}
    for index, pcr in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_PCRS:
            raise AttestationError("malformed", "PCR indices must be integers in [0, 32)")
        if not isinstance(pcr, bytes) or len(pcr) not in PCR_LENGTHS:
            raise AttestationError("malformed", f"PCR{index} must be 32, 48 or 64 bytes")
        pcrs[index] = pcr
    return pcrs


def _cabundle(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list) or not value:
        raise AttestationError("malformed", "cabundle must be a non-empty array")
    return tuple(_bytes(item, "cabundle entry", 1, MAX_CERTIFICATE) for item in value)


def _certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise AttestationError("certificate", f"the {what} is not a DER certificate") from None


def verify_document(
    message: bytes,
    trusted_root: x509.Certificate,
    *,
    now: dt.datetime,
    max_age: dt.timedelta,
) -> AttestationDocument:
    """Return the document in ``message`` if it is authentic and fresh at ``now``."""
    try:
        envelope = decode_sign1(message)
    except CoseError as exc:
        raise AttestationError("cose", f"the attestation document is not COSE_Sign1: {exc}") from None
    document = AttestationDocument.from_cbor(envelope.payload)
    leaf = _certificate(document.certificate, "signing certificate")
    # cabundle[0] is the root as the document claims it; only the trusted root counts.
    intermediates = [_certificate(der, "bundle certificate") for der in document.cabundle[1:]]
    try:
        verify_chain(leaf, intermediates, trusted_root, now)
    except PkiError as exc:
        raise AttestationError("chain", str(exc)) from None
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise AttestationError("chain", "the signing certificate has no EC key")
    try:
        verify_sign1(envelope, public_key)
    except CoseError as exc:
        raise AttestationError("signature", f"the attestation document signature is invalid: {exc}") from None
    check_fresh(document, now=now, max_age=max_age)
    return document


def check_fresh(document: AttestationDocument, *, now: dt.datetime, max_age: dt.timedelta) -> None:
    """Refuse a document dated in the future or older than ``max_age`` at ``now``."""
    issued = document.timestamp
    if issued > now + FUTURE_SKEW:
        raise AttestationError("stale", "the attestation document is dated in the future")
    if now - issued > max_age:
        raise AttestationError("stale", "the attestation document is too old")


def _chain_validity(
    document: AttestationDocument, trusted_root: x509.Certificate
) -> tuple[dt.datetime, dt.datetime]:
    """When every certificate of the document's chain, and the root, is within its validity period."""
    certificates = [
        x509.load_der_x509_certificate(der) for der in (document.certificate, *document.cabundle[1:])
    ]
    certificates.append(trusted_root)
    return (
        max(c.not_valid_before_utc for c in certificates),
        min(c.not_valid_after_utc for c in certificates),
    )


class DocumentVerifier:
    """:func:`verify_document`, remembering the documents it found authentic.

    An enclave presents the same document with many requests (it reuses its key pair for
    a while; see ``vault/enclave/recipient_keys.py``). Whether given bytes are a valid
    signature by a certificate that chains to a given root does not change, so for a
    document seen before only what depends on the time is checked again: that ``now``
    lies within every certificate's validity period (else the full verification runs
    and refuses it) and the document's freshness. Only successes are remembered, keyed
    by the SHA-256 of the whole message and of the trusted root; at most ``max_entries``.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._known: OrderedDict[bytes, tuple[AttestationDocument, dt.datetime, dt.datetime]] = OrderedDict()

    def __len__(self) -> int:
        """How many documents are remembered."""
        with self._lock:
            return len(self._known)

    def verify(
        self,
        message: bytes,
        trusted_root: x509.Certificate,
        *,
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> AttestationDocument:
        key = hashlib.sha256(message).digest() + trusted_root.fingerprint(hashes.SHA256())
        with self._lock:
            known = self._known.get(key)
            if known is not None:
                self._known.move_to_end(key)
        if known is not None and known[1] <= now <= known[2]:
            check_fresh(known[0], now=now, max_age=max_age)
            return known[0]
        document = verify_document(message, trusted_root, now=now, max_age=max_age)
        not_before, not_after = _chain_validity(document, trusted_root)
        with self._lock:
            self._known[key] = (document, not_before, not_after)
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        return document
