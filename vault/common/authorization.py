"""The API's authorization of one decrypt, and its verification in the enclave (decision D16).

The API signs, for each decrypt it has audited, a statement of exactly what it allows:
this vault, these field names, these expressions (output name and SHA-256 of the
text), under this request id, until this expiry. The signature is ECDSA with an
asymmetric KMS key that only the API's role may use (``kms:Sign``). The enclave reveals
nothing without a fresh, unreplayed authorization that covers the request exactly.

What stops the parent from signing its own: the verifying key travels with the request,
and its SHA-256 digest (:func:`authorizer_digest`) is part of the KMS encryption context
of the vault's private key, bound when the vault is created
(:data:`AUTHORIZER_CONTEXT_KEY`). An enclave shown another key derives another context,
and KMS does not release the vault key at all.

Wire form (an optional ``authorization`` object on the decrypt request)::

    {"claims": b64(claim bytes), "signature": b64(DER ECDSA), "public_key": b64(DER SPKI)}

The claim bytes are :data:`DOMAIN` followed by canonical JSON (sorted keys, no spaces,
ASCII). What is signed is :func:`signing_input`: a fixed prefix and the claims' SHA-256,
so the message stays within KMS ``Sign``'s 4096-byte ``RAW`` limit whatever the request's
size. The verifier checks the signature over the bytes as sent, then parses them
strictly, so signer and verifier never need to agree on a re-serialisation.

Every refusal is an :class:`AuthorizationError` with a stable :class:`AuthorizationErrorCode`;
messages name the failed check, never a field value.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pydantic import BaseModel, ConfigDict, Field

#: Version of the claims; a verifier refuses any other.
FORMAT = "nitro-vault-authorization/1"
#: Prefix of the signed bytes, so the key's signatures cannot be taken for another message.
DOMAIN = (FORMAT + "\n").encode("ascii")
#: KMS key spec and signing algorithm of the API's authorizer key (the CDK app and the
#: emulator create it with these); P-384 with ECDSA_SHA_384 verifies as well.
KEY_SPEC: Final = "ECC_NIST_P256"
SIGNING_ALGORITHM: Final = "ECDSA_SHA_256"
#: Encryption-context key that binds a vault's private key to its authorizer's public key.
AUTHORIZER_CONTEXT_KEY = "authorizer"
#: Longest lifetime (expiry - issue) an enclave accepts; the API issues shorter ones.
MAX_LIFETIME_SECONDS = 60
#: What the API issues: long enough for a parent and a KMS call under load.
DEFAULT_LIFETIME_SECONDS = 30
#: How far in the future ``issued_at`` may lie (clocks of API and enclave differ).
CLOCK_SKEW_SECONDS = 5
#: Request ids the replay cache holds at most; beyond that it refuses (fails closed).
REPLAY_CACHE_SIZE = 100_000
MAX_REQUEST_ID_LENGTH = 64
#: Bounds on the wire: what a claim for the largest request can take, with room.
MAX_CLAIMS_BYTES = 256 * 1024
MAX_SIGNATURE_BYTES = 160
MAX_PUBLIC_KEY_BYTES = 256

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    ec.SECP256R1.name: hashes.SHA256,
    ec.SECP384R1.name: hashes.SHA384,
}
_CLAIM_KEYS = frozenset(
    {"format", "vault_id", "fields", "expressions", "request_id", "issued_at", "expires_at"}
)
#: Claims only an operation other than a decrypt carries (a decrypt's bytes stay as they were).
_OPERATION_KEYS = frozenset({"operation", "parameters"})
#: The operation a grant without an ``operation`` claim allows.
DECRYPT_OPERATION = "decrypt"
_OPERATION = re.compile(r"[a-z][a-z_]{0,31}")
_PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Longest value of one signed parameter (a DER public key in base64 fits with room).
MAX_PARAMETER_LENGTH = 4096


class AuthorizationErrorCode(enum.StrEnum):
    MISSING = "AuthorizationMissing"
    MALFORMED = "AuthorizationMalformed"
    KEY_UNSUPPORTED = "AuthorizationKeyUnsupported"
    SIGNATURE_INVALID = "AuthorizationSignatureInvalid"
    EXPIRED = "AuthorizationExpired"
    NOT_YET_VALID = "AuthorizationNotYetValid"
    LIFETIME_TOO_LONG = "AuthorizationLifetimeTooLong"
    #: The request asks for another vault, other fields or other expressions than authorized.
    MISMATCH = "AuthorizationMismatch"
    REPLAYED = "AuthorizationReplayed"
    #: More unexpired request ids than the cache holds: refused rather than forgotten.
    REPLAY_CACHE_FULL = "AuthorizationReplayCacheFull"


class AuthorizationError(Exception):
    """A refused authorization; ``code`` is stable, ``str()`` names the check and is safe to log."""

    def __init__(self, code: AuthorizationErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _refuse(code: AuthorizationErrorCode, message: str) -> AuthorizationError:
    return AuthorizationError(code, message)


def signing_input(claims: bytes) -> bytes:
    """What the authorizer key signs for ``claims``: a prefix and their SHA-256 (67 bytes)."""
    return DOMAIN + b"sha256:" + hashlib.sha256(claims).digest()


def expression_digest(text: str) -> str:
    """SHA-256 (hex) of an expression's UTF-8 text: the claim names what runs, not just its output."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def authorizer_digest(public_key_der: bytes) -> str:
    """SHA-256 (hex) of the authorizer's DER SubjectPublicKeyInfo: the encryption-context value."""
    return hashlib.sha256(public_key_der).hexdigest()


def authorizer_context(vault_id: str, public_key_der: bytes, vault_key: str) -> dict[str, str]:
    """The KMS encryption context of a vault's private key: its vault id and its authorizer."""
    return {vault_key: vault_id, AUTHORIZER_CONTEXT_KEY: authorizer_digest(public_key_der)}


@dataclass(frozen=True)
class Grant:
    """What one authorization allows."""

    vault_id: str
    #: Field names, sorted and unique.
    fields: tuple[str, ...]
    #: ``(output name, expression_digest(text))`` in request order.
    expressions: tuple[tuple[str, str], ...]
    request_id: str
    #: Seconds since the epoch.
    issued_at: int
    expires_at: int
    #: What the enclave may do with the opened fields: reveal them (``decrypt``), or an
    #: operation whose answer is not plaintext (re-sealing, keyed digests).
    operation: str = DECRYPT_OPERATION
    #: The operation's inputs, signed exactly: ``(name, value)`` sorted by name (for example
    #: the public key a rotation seals to, so nobody can have the fields sealed to theirs).
    parameters: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_request(
        cls,
        *,
        vault_id: str,
        fields: Iterable[str],
        expressions: Mapping[str, str],
        request_id: str,
        issued_at: int,
        lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
        operation: str = DECRYPT_OPERATION,
        parameters: Mapping[str, str] | None = None,
    ) -> Grant:
        return cls(
            vault_id=vault_id,
            fields=tuple(sorted(set(fields))),
            expressions=tuple((name, expression_digest(text)) for name, text in expressions.items()),
            request_id=request_id,
            issued_at=issued_at,
            expires_at=issued_at + lifetime_seconds,
            operation=operation,
            parameters=tuple(sorted((parameters or {}).items())),
        )

    def to_bytes(self) -> bytes:
        """The bytes that are signed: :data:`DOMAIN` + canonical JSON."""
        document = {
            "format": FORMAT,
            "vault_id": self.vault_id,
            "fields": list(self.fields),
            "expressions": [list(pair) for pair in self.expressions],
            "request_id": self.request_id,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }
        if self.operation != DECRYPT_OPERATION or self.parameters:
            document["operation"] = self.operation
            document["parameters"] = [list(pair) for pair in self.parameters]
        return (
            DOMAIN + json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Grant:
        """Parse claim bytes strictly; raises :class:`AuthorizationError` (``MALFORMED``)."""
        if not data.startswith(DOMAIN):
            raise _refuse(AuthorizationErrorCode.MALFORMED, "authorization claims have an unknown format")
        try:
            document = json.loads(data[len(DOMAIN) :].decode("ascii"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _refuse(AuthorizationErrorCode.MALFORMED, "authorization claims are not JSON") from None
        if (
            not isinstance(document, dict)
            or set(document) - _OPERATION_KEYS != _CLAIM_KEYS
            or len(set(document) & _OPERATION_KEYS) == 1
            or document["format"] != FORMAT
        ):
            raise _refuse(AuthorizationErrorCode.MALFORMED, "authorization claims have an unknown format")
        operation = _operation(document.get("operation", DECRYPT_OPERATION))
        parameters = _parameters(document.get("parameters", []))
        if "operation" in document and operation == DECRYPT_OPERATION and not parameters:
            # One grant, one encoding: a plain decrypt never carries the operation claims.
            raise _malformed("operation")
        return cls(
            vault_id=_text(document["vault_id"], "vault_id"),
            fields=_names(document["fields"]),
            expressions=_expression_claims(document["expressions"]),
            request_id=_request_id(document["request_id"]),
            issued_at=_seconds(document["issued_at"], "issued_at"),
            expires_at=_seconds(document["expires_at"], "expires_at"),
            operation=operation,
            parameters=parameters,
        )


def _malformed(what: str) -> AuthorizationError:
    return _refuse(AuthorizationErrorCode.MALFORMED, f"authorization claim {what} is malformed")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _malformed(what)
    return value


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _malformed("fields")
    names = tuple(_text(name, "fields") for name in value)
    if list(names) != sorted(set(names)):
        raise _malformed("fields")
    return names


def _expression_claims(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise _malformed("expressions")
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise _malformed("expressions")
        name, digest = _text(pair[0], "expressions"), _text(pair[1], "expressions")
        if not _DIGEST.fullmatch(digest):
            raise _malformed("expressions")
        pairs.append((name, digest))
    if len({name for name, _ in pairs}) != len(pairs):
        raise _malformed("expressions")
    return tuple(pairs)


def _operation(value: Any) -> str:
    if not isinstance(value, str) or not _OPERATION.fullmatch(value):
        raise _malformed("operation")
    return value


def _parameters(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise _malformed("parameters")
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise _malformed("parameters")
        name, text = pair
        if not isinstance(name, str) or not _PARAMETER_NAME.fullmatch(name):
            raise _malformed("parameters")
        if not isinstance(text, str) or len(text) > MAX_PARAMETER_LENGTH:
            raise _malformed("parameters")
        pairs.append((name, text))
    names = [name for name, _ in pairs]
    if names != sorted(set(names)):
        raise _malformed("parameters")
    return tuple(pairs)


def _request_id(value: Any) -> str:
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise _malformed("request_id")
    return value


def _seconds(value: Any, what: str) -> int:
    # bool is an int in Python; JSON true is not a time.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(what)
    return value


class AuthorizationWire(BaseModel):
    """The ``authorization`` object of a decrypt request, as JSON carries it (base64 strings)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    claims: str = Field(max_length=MAX_CLAIMS_BYTES * 4 // 3 + 4)
    signature: str = Field(max_length=MAX_SIGNATURE_BYTES * 4 // 3 + 4)
    public_key: str = Field(max_length=MAX_PUBLIC_KEY_BYTES * 4 // 3 + 4)

    def __repr__(self) -> str:
        return "AuthorizationWire(...)"

    __str__ = __repr__


@dataclass(frozen=True)
class SignedAuthorization:
    claims: bytes
    signature: bytes
    #: DER SubjectPublicKeyInfo of the key that signed.
    public_key: bytes

    def to_wire(self) -> AuthorizationWire:
        return AuthorizationWire(
            claims=base64.b64encode(self.claims).decode("ascii"),
            signature=base64.b64encode(self.signature).decode("ascii"),
            public_key=base64.b64encode(self.public_key).decode("ascii"),
        )

    @classmethod
    def from_wire(cls, wire: AuthorizationWire | None) -> SignedAuthorization:
        if wire is None:
            raise _refuse(AuthorizationErrorCode.MISSING, "the request carries no authorization")
        return cls(
            claims=_b64(wire.claims, "claims"),
            signature=_b64(wire.signature, "signature"),
            public_key=_b64(wire.public_key, "public_key"),
        )


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _refuse(AuthorizationErrorCode.MALFORMED, f"authorization {what} is not base64") from None


class Signer(Protocol):
    """Signs with the authorizer key: ECDSA over ``message`` with the key's curve's hash."""

    @property
    def public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo."""
        ...

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA signature of ``message``."""
        ...


def sign(grant: Grant, signer: Signer) -> SignedAuthorization:
    claims = grant.to_bytes()
    return SignedAuthorization(
        claims=claims, signature=signer.sign(signing_input(claims)), public_key=signer.public_key
    )


def _hash_for(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    algorithm = _HASHES.get(key.curve.name)
    if algorithm is None:
        raise _refuse(AuthorizationErrorCode.KEY_UNSUPPORTED, "the authorizer key is not P-256 or P-384")
    return algorithm()


def load_authorizer_key(public_key_der: bytes) -> ec.EllipticCurvePublicKey:
    if len(public_key_der) > MAX_PUBLIC_KEY_BYTES:
        raise _refuse(AuthorizationErrorCode.KEY_UNSUPPORTED, "the authorizer key is too long")
    try:
        key = load_der_public_key(public_key_der)
    except (ValueError, TypeError):
        raise _refuse(
            AuthorizationErrorCode.KEY_UNSUPPORTED, "the authorizer key is not a public key"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise _refuse(AuthorizationErrorCode.KEY_UNSUPPORTED, "the authorizer key is not an EC key")
    _hash_for(key)
    return key


class ReplayCache:
    """Request ids seen, each kept until its authorization expires; bounded, thread-safe.

    An authorization can only be used before its expiry, so forgetting an id after it
    is enough. When more unexpired ids are held than ``capacity``, new ones are refused:
    forgetting an unexpired id would let it be replayed.
    """

    def __init__(self, capacity: int = REPLAY_CACHE_SIZE) -> None:
        self._capacity = capacity
        self._expiry: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def admit(self, request_id: str, expires_at: int, now: float) -> None:
        with self._lock:
            seen = self._expiry.get(request_id)
            if seen is not None and seen >= now:
                raise _refuse(
                    AuthorizationErrorCode.REPLAYED, "the authorization's request id was already used"
                )
            if len(self._expiry) >= self._capacity:
                self._expiry = {rid: at for rid, at in self._expiry.items() if at >= now}
            if len(self._expiry) >= self._capacity:
                raise _refuse(AuthorizationErrorCode.REPLAY_CACHE_FULL, "too many authorizations in flight")
            self._expiry[request_id] = expires_at


@dataclass(frozen=True)
class RequestScope:
    """What a decrypt request asks for, as the enclave received it."""

    vault_id: str
    fields: frozenset[str]
    expressions: Mapping[str, str]
    operation: str = DECRYPT_OPERATION
    parameters: Mapping[str, str] = field(default_factory=dict)


class AuthorizationVerifier:
    """Checks a signed authorization against the request it came with; one per enclave process."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        replay_cache: ReplayCache | None = None,
        max_lifetime_seconds: int = MAX_LIFETIME_SECONDS,
        clock_skew_seconds: int = CLOCK_SKEW_SECONDS,
    ) -> None:
        self._clock = clock
        self._replay = replay_cache if replay_cache is not None else ReplayCache()
        self._max_lifetime = max_lifetime_seconds
        self._skew = clock_skew_seconds

    def verify(self, signed: SignedAuthorization, scope: RequestScope) -> Grant:
        """The grant, if ``signed`` is a valid, fresh, unused authorization of exactly ``scope``.

        The signature is checked first: nothing in unsigned bytes is believed, and only
        a valid authorization uses up its request id.
        """
        key = load_authorizer_key(signed.public_key)
        if len(signed.claims) > MAX_CLAIMS_BYTES or len(signed.signature) > MAX_SIGNATURE_BYTES:
            raise _refuse(AuthorizationErrorCode.MALFORMED, "authorization is too long")
        try:
            key.verify(signed.signature, signing_input(signed.claims), ec.ECDSA(_hash_for(key)))
        except InvalidSignature:
            raise _refuse(
                AuthorizationErrorCode.SIGNATURE_INVALID, "the authorization's signature does not verify"
            ) from None
        grant = Grant.from_bytes(signed.claims)
        now = self._clock()
        if grant.expires_at - grant.issued_at > self._max_lifetime or grant.expires_at < grant.issued_at:
            raise _refuse(
                AuthorizationErrorCode.LIFETIME_TOO_LONG, "the authorization's lifetime is too long"
            )
        if grant.issued_at > now + self._skew:
            raise _refuse(AuthorizationErrorCode.NOT_YET_VALID, "the authorization is issued in the future")
        if now >= grant.expires_at:
            raise _refuse(AuthorizationErrorCode.EXPIRED, "the authorization has expired")
        _check_scope(grant, scope)
        self._replay.admit(grant.request_id, grant.expires_at, now)
        return grant

    def still_valid(self, grant: Grant) -> None:
        """Refuse if ``grant`` expired since it was verified (checked again before anything is revealed)."""
        if self._clock() >= grant.expires_at:
            raise _refuse(AuthorizationErrorCode.EXPIRED, "the authorization expired during the request")


def _check_scope(grant: Grant, scope: RequestScope) -> None:
    if grant.vault_id != scope.vault_id:
        raise _refuse(AuthorizationErrorCode.MISMATCH, "the authorization is for another vault")
    if frozenset(grant.fields) != scope.fields:
        raise _refuse(AuthorizationErrorCode.MISMATCH, "the authorization covers other fields")
    asked = tuple((name, expression_digest(text)) for name, text in scope.expressions.items())
    if grant.expressions != asked:
        raise _refuse(AuthorizationErrorCode.MISMATCH, "the authorization covers other expressions")
    if grant.operation != scope.operation:
        raise _refuse(AuthorizationErrorCode.MISMATCH, "the authorization is for another operation")
    if grant.parameters != tuple(sorted(scope.parameters.items())):
        raise _refuse(AuthorizationErrorCode.MISMATCH, "the authorization covers other parameters")
