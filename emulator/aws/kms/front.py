"""The KMS attestation front: what KMS does with a Recipient, in front of moto or LocalStack.

Neither moto nor LocalStack understands ``Recipient`` (both answer ``Decrypt`` with
``Plaintext`` regardless), neither evaluates a key policy, moto ignores key states and
lacks ``GenerateDataKeyPairWithoutPlaintext``, LocalStack lacks ``ReEncrypt``. This HTTP
service speaks the KMS JSON protocol (``X-Amz-Target: TrentService.*``,
``application/x-amz-json-1.1``) on 127.0.0.1 and treats each operation as its table says
(:mod:`emulator.aws.kms.operations`):

``Decrypt``
    With a ``Recipient``: verify the attestation document (COSE signature, chain to
    the emulator's root, validity, freshness), ask the backend for the plaintext, then
    evaluate the key policy with the document's values
    (``kms:RecipientAttestation:ImageSha384`` = PCR0, ``...:PCR<n>``), the encryption
    context and the caller, and answer ``CiphertextForRecipient`` (CMS EnvelopedData to
    the document's RSA key) -- never ``Plaintext``. Without a ``Recipient`` the same
    policy decides (so the instance role is refused: its statement needs attestation
    values). A ``KeyId`` that is not the ciphertext's key: ``IncorrectKeyException``.
``ReEncrypt``
    The backend opens the ciphertext; the key policies of the source key
    (``kms:ReEncryptFrom``) and of the destination key (``kms:ReEncryptTo``) decide, for
    the keys the front fronts; the backend's ``Encrypt`` seals it again.
``GenerateDataKeyPair`` and ``GenerateDataKeyPairWithoutPlaintext``
    Policy-checked (encryption context and ``kms:DataKeyPairSpec`` included); every spec
    of KMS (``RSA_2048/3072/4096``, ``ECC_NIST_P256/P384/P521``, ``ECC_SECG_P256K1``). A
    real pair; the private key (DER PKCS#8) is encrypted by the backend's ``Encrypt``
    under the same encryption context, so the backend's ``Decrypt`` opens it later.
``GenerateDataKey`` and ``GenerateRandom`` with a ``Recipient``
    The backend makes the data key (or the random bytes); the front answers
    ``CiphertextForRecipient`` (and for a data key its ``CiphertextBlob``), never
    ``Plaintext``. ``GenerateRandom`` has no key, so no key policy: only the document is
    verified. Without a ``Recipient`` both are treated as the table says (gated, forwarded).
``DeriveSharedSecret``
    Policy-checked (``kms:KeyAgreementAlgorithm`` included) on a ``KEY_AGREEMENT`` key:
    ECDH of the key's private key with the request's ``PublicKey``, by the configured
    :data:`KeyAgreement` (moto holds the key but lacks the operation) or by the backend's
    own ``DeriveSharedSecret``; with a ``Recipient``, ``CiphertextForRecipient`` in place
    of ``SharedSecret``.
Every other operation on a key the front fronts (one whose deployed policy it holds)
    is forwarded only after its key state is checked and that policy allows it for the
    caller (``CreateGrant``, ``PutKeyPolicy``, ``GenerateDataKey``, ``Encrypt``, ...).
Operations on other keys and on no key (``CreateKey``, ``ListKeys``)
    are forwarded unchanged. A ``Recipient`` on an operation that takes none, an
    operation outside the table and any path but ``/`` are refused.

Every operation KMS accepts a ``Recipient`` on verifies its document first and offers its
values to the key policy (``kms:RecipientAttestation:ImageSha384`` = PCR0,
``...:PCR<n>``); its answer is then ``CiphertextForRecipient`` (CMS EnvelopedData,
RSAES-OAEP-SHA-256, to the document's RSA key), never the plaintext.

Each decision (a key policy's verdict, an unusable document) is logged at INFO as one
``kms front decision`` line and kept in :attr:`KmsFront.decisions`: the operation, key,
caller, verdict, and why -- the statement that allowed or denied, or, when none allowed,
the condition keys of the statements that came closest (``kms:RecipientAttestation:PCR2``);
never values, key material or plaintext.

Every request is identified first: the access key id of its SigV4 ``Authorization``
header, looked up in a configured map (access key id → :class:`Identity`); when the
identity has its secret key, the signature itself is verified. The key policy of a key
is the one set on the front; for the operations the front implements, a key it was not
given a policy for is judged by the backend's ``GetKeyPolicy`` document. Key states come
from the backend's ``DescribeKey`` (:mod:`emulator.aws.kms.key_states`). Error answers
are shaped as AWS shapes them (:mod:`emulator.aws.kms.errors`).

Known difference from KMS: the backend is asked to decrypt before the policy is
evaluated (the front learns the key only from the backend's answer), so a request that
is both unauthorised and has a wrong encryption context gets ``InvalidCiphertextException``
where KMS would say ``AccessDeniedException``; no plaintext leaves the front either way.

Fault hooks (``KmsFront.faults``, an :class:`emulator.faults.hooks.FaultHooks`): per
operation, throttle the next N requests with ``ThrottlingException``, fail them with a
status (``KMSInternalException``), or hold them before they are answered.

Request quotas (``KmsFront.quotas``, opt-in, :mod:`emulator.aws.kms.quotas`): KMS's published
quotas for the cryptographic operations, counted after a request is identified; past one
the answer is KMS's ``ThrottlingException``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_public_key,
)

from emulator.aws.json_client import KMS, AwsJsonClient, AwsJsonError, BackendUnreachable
from emulator.aws.kms.cms import envelope
from emulator.aws.kms.decisions import Decision, DecisionLog
from emulator.aws.kms.errors import (
    ACCESS_DENIED_OTHER,
    ALIAS_NOT_FOUND,
    CIPHERTEXT_KEY_UNKNOWN,
    DRY_RUN,
    INCORRECT_KEY,
    INTERNAL,
    INVALID_CIPHERTEXT,
    INVALID_KEY_ID,
    INVALID_KEY_USAGE,
    INVALID_SIGNATURE,
    KEY_NOT_FOUND,
    MISSING_TOKEN,
    SERIALIZATION,
    THROTTLING,
    UNKNOWN_OPERATION,
    UNRECOGNIZED_CLIENT,
    KmsError,
    access_denied,
    missing,
    validation,
)
from emulator.aws.kms.key_states import DEFAULT_TTL, KeyDirectory, KeyInfo, KeyUse, check_state
from emulator.aws.kms.operations import Operation, Treatment, operation
from emulator.aws.kms.policy import RequestContext, evaluate, explain
from emulator.aws.kms.quotas import RequestQuotas
from emulator.aws.sigv4 import Principal, SigV4Failure, SigV4Verifier
from emulator.aws.upstream import Reply, Upstream, upstream_for
from emulator.faults.hooks import FaultHooks
from emulator.host.http import DEFAULT_LIMITS, ConnectionLimits, LoopbackServer
from emulator.host.http_handler import LoopbackHandler, RequestError
from emulator.nitro.attestation import AttestationDocument, AttestationError, DocumentVerifier

__all__ = ["DEFAULT_MAX_DOCUMENT_AGE", "KEY_PAIR_SPECS", "Identity", "KeyAgreement", "KmsError", "KmsFront"]

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService."
KEY_ENCRYPTION_ALGORITHM = "RSAES_OAEP_SHA_256"
#: ``KeyPairSpec`` → how to make such a pair (all of KMS's data key pair specs).
KEY_PAIR_SPECS: dict[str, Callable[[], PrivateKeyTypes]] = {
    "RSA_2048": lambda: rsa.generate_private_key(65537, 2048),
    "RSA_3072": lambda: rsa.generate_private_key(65537, 3072),
    "RSA_4096": lambda: rsa.generate_private_key(65537, 4096),
    "ECC_NIST_P256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ECC_NIST_P384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ECC_NIST_P521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "ECC_SECG_P256K1": lambda: ec.generate_private_key(ec.SECP256K1()),
}
#: ``KeySpec`` of a key agreement key → its curve.
_AGREEMENT_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ECC_NIST_P256": ec.SECP256R1,
    "ECC_NIST_P384": ec.SECP384R1,
    "ECC_NIST_P521": ec.SECP521R1,
}
#: Data key and random byte lengths KMS accepts.
_MAX_BYTES = 1024
#: How old an attestation document may be (the enclave renews its own well before).
DEFAULT_MAX_DOCUMENT_AGE = dt.timedelta(minutes=5)
MAX_BODY = 1024 * 1024
MIN_RSA_BITS = 2048
_MAX_LIST_PAGES = 100
_CREDENTIAL = re.compile(r"Credential=(?P<key>[A-Za-z0-9]+)/(?:[^/,\s]*/){2}(?P<service>[^/,\s]*)/")
_KEY_ID = re.compile(
    r"^(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.I
)
#: Request members whose values KMS offers the key policy as condition keys.
_CONDITION_MEMBERS = {
    "KeyPairSpec": "kms:DataKeyPairSpec",
    "EncryptionAlgorithm": "kms:EncryptionAlgorithm",
    "SigningAlgorithm": "kms:SigningAlgorithm",
    "MacAlgorithm": "kms:MacAlgorithm",
    "GranteePrincipal": "kms:GranteePrincipal",
    "RetiringPrincipal": "kms:RetiringPrincipal",
    "KeyAgreementAlgorithm": "kms:KeyAgreementAlgorithm",
}
_log = logging.getLogger(__name__)

#: ECDH of a backend key with a peer's public key: ``(key ARN, peer SubjectPublicKeyInfo DER)``
#: → the shared secret. For a backend that holds the key but has no ``DeriveSharedSecret``.
KeyAgreement = Callable[[str, bytes], bytes]


@dataclass(frozen=True)
class Identity:
    """Who holds an access key, as KMS's request context sees them."""

    principal_arn: str
    #: When given, the request's SigV4 signature is verified with it.
    secret_access_key: str | None = field(default=None, repr=False)
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Further global condition keys, e.g. ``lambda:SourceFunctionArn`` or ``aws:SourceVpc``.
    context: Mapping[str, str] = field(default_factory=dict)
    #: What this principal's IAM policies allow (consulted for account-root key policy statements).
    iam_allowed_actions: tuple[str, ...] = ()

    @property
    def account(self) -> str:
        parts = self.principal_arn.split(":")
        return parts[4] if len(parts) > 4 else ""


def _check_dry_run(body: Mapping[str, Any]) -> None:
    """Like KMS: an allowed request with ``DryRun`` is answered 412 instead of being carried out."""
    if body.get("DryRun") is True:
        raise KmsError.of(DRY_RUN)


def _key_id(key: str) -> str:
    """The key id of a key id or key ARN (``arn:...:key/<id>``)."""
    return key.rsplit("key/", 1)[-1] if key.startswith("arn:") else key


def _is_alias(key: str) -> bool:
    return key.startswith("alias/") or (key.startswith("arn:") and ":alias/" in key)


def _blob(value: Any, name: str) -> bytes:
    if value is None:
        raise missing(name)
    if not isinstance(value, str):
        raise validation(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KmsError.of(SERIALIZATION, f"{name} is not valid base64") from None


def _optional_string(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise validation(f"{name} must be a non-empty string")
    return value


def _string(body: Mapping[str, Any], name: str) -> str:
    value = _optional_string(body, name)
    if value is None:
        raise missing(name)
    return value


def _encryption_context(body: Mapping[str, Any], name: str = "EncryptionContext") -> dict[str, str]:
    context = body.get(name) or {}
    if not isinstance(context, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise validation(f"{name} must map strings to strings")
    return context


def _context_keys(context: Mapping[str, str]) -> dict[str, list[str]]:
    keys = {f"kms:EncryptionContext:{k}": [v] for k, v in context.items()}
    if context:
        keys["kms:EncryptionContextKeys"] = list(context)
    return keys


def _request_condition_keys(body: Mapping[str, Any]) -> dict[str, list[str]]:
    """The condition keys KMS derives from a request's members (for the gated operations)."""
    keys = _context_keys(_encryption_context(body))
    for member, key in _CONDITION_MEMBERS.items():
        value = body.get(member)
        if isinstance(value, str):
            keys[key] = [value]
    operations = body.get("Operations")
    if isinstance(operations, list) and all(isinstance(o, str) for o in operations):
        keys["kms:GrantOperations"] = list(operations)
        keys["kms:GrantIsForAWSResource"] = ["false"]
    constraints = body.get("Constraints")
    if isinstance(constraints, dict):
        keys["kms:GrantConstraintType"] = sorted(str(c) for c in constraints)
    if "BypassPolicyLockoutSafetyCheck" in body:
        keys["kms:BypassPolicyLockoutSafetyCheck"] = [
            "true" if body["BypassPolicyLockoutSafetyCheck"] is True else "false"
        ]
    return keys


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _attestation_keys(document: AttestationDocument) -> dict[str, list[str]]:
    """The ``kms:RecipientAttestation:*`` condition keys KMS derives from a verified document."""
    keys = {f"kms:RecipientAttestation:PCR{i}": [value.hex()] for i, value in document.pcrs.items()}
    if 0 in document.pcrs:
        keys["kms:RecipientAttestation:ImageSha384"] = [document.pcrs[0].hex()]
    return keys


def _byte_count(body: Mapping[str, Any], name: str = "NumberOfBytes") -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_BYTES:
        raise validation(f"{name} must be an integer from 1 to {_MAX_BYTES}")
    return value


class KmsFront:
    """The attestation front; ``start()`` binds 127.0.0.1 (``port=0``: a free port)."""

    def __init__(
        self,
        *,
        backend: Upstream | str,
        trusted_root: x509.Certificate,
        identities: Mapping[str, Identity | str] | None = None,
        key_policies: Mapping[str, Mapping[str, Any]] | None = None,
        region: str = "us-east-1",
        backend_credentials: tuple[str, str] = ("123456789012", "test"),
        max_document_age: dt.timedelta = DEFAULT_MAX_DOCUMENT_AGE,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        key_state_ttl: float = DEFAULT_TTL,
        key_agreement: KeyAgreement | None = None,
        account_id: str = "123456789012",
    ) -> None:
        self.upstream = upstream_for(backend)
        self.trusted_root = trusted_root
        self.region = region
        #: The account whose aliases a bare ``alias/...`` names (AWS's error texts give the alias ARN).
        self.account_id = account_id
        self.max_document_age = max_document_age
        self.clock = clock
        #: Switched by the emulator's fault injector; see :meth:`apply_faults`.
        self.faults = FaultHooks()
        #: KMS's request quotas, when the emulator reproduces them (``None``: no throttling).
        self.quotas: RequestQuotas | None = None
        #: What the front decided recently, and why (read by the emulator's dashboard).
        self.decisions = DecisionLog()
        #: ``None``: the backend's own ``DeriveSharedSecret`` derives shared secrets.
        self.key_agreement = key_agreement
        self._identities: dict[str, Identity] = {}
        self._policies: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        for access_key_id, identity in (identities or {}).items():
            self.add_identity(access_key_id, identity)
        for key, policy in (key_policies or {}).items():
            self.set_key_policy(key, policy)
        self._backend = AwsJsonClient(self.upstream, KMS, region=region, credentials=backend_credentials)
        self._documents = DocumentVerifier()
        #: Keys by the identifiers callers use, with their states (see :mod:`.key_states`).
        self.keys = KeyDirectory(self._describe, ttl=key_state_ttl)
        self._server = LoopbackServer(_Handler, self, name="kms-front", host=host, port=port, limits=limits)

    # -- configuration -------------------------------------------------------------------

    def apply_faults(self, operation: str) -> None:
        """Hold, throttle or fail a request as the fault hooks say (called once per request)."""
        injected = self.faults.before(operation)
        if injected is None:
            return
        if injected.kind == "throttle":
            raise KmsError.of(THROTTLING)
        raise KmsError.of(INTERNAL, "injected failure", status=injected.status)

    def apply_quotas(self, operation: str, payload: Mapping[str, Any]) -> None:
        """Throttle a request past its KMS request quota, when quotas are on (once per request)."""
        if self.quotas is not None:
            self.quotas.admit(operation, payload, self._key_spec)

    def _key_spec(self, key: str) -> str | None:
        try:
            return self.keys.lookup(key).spec
        except KmsError:
            # An unknown key is refused by the operation itself; it counts as symmetric meanwhile.
            return None

    def add_identity(self, access_key_id: str, identity: Identity | str) -> None:
        """Map an access key id to a principal (an ARN string is shorthand for ``Identity(arn)``)."""
        with self._lock:
            self._identities[access_key_id] = (
                identity if isinstance(identity, Identity) else Identity(principal_arn=identity)
            )

    def set_key_policy(self, key: str, policy: Mapping[str, Any]) -> None:
        """Front ``key`` (key id or key ARN): enforce ``policy`` on every operation on it."""
        with self._lock:
            self._policies[_key_id(key)] = json.loads(json.dumps(policy))

    def fronts(self, key_arn: str) -> bool:
        """Whether the front holds the key policy of ``key_arn`` (key id or ARN)."""
        with self._lock:
            return _key_id(key_arn) in self._policies

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        self._server.start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()

    close = stop

    def __enter__(self) -> KmsFront:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def endpoint_url(self) -> str:
        return self._server.url

    # -- request handling ----------------------------------------------------------------

    def identify(self, headers: list[tuple[str, str]], path: str, body: bytes) -> Identity:
        authorization = next((v for k, v in headers if k.lower() == "authorization"), "")
        match = _CREDENTIAL.search(authorization)
        if match is None:
            raise KmsError.of(MISSING_TOKEN)
        with self._lock:
            identity = self._identities.get(match["key"])
        if identity is None:
            raise KmsError.of(UNRECOGNIZED_CLIENT)
        if match["service"] != "kms":
            # Checked even where the signature is not: the backend picks its service by this scope.
            raise KmsError.of(INVALID_SIGNATURE, "Credential should be scoped to correct service: 'kms'.")
        if identity.secret_access_key is not None:
            verifier = SigV4Verifier(
                [Principal(match["key"], identity.secret_access_key, identity.principal_arn)],
                self.region,
                service="kms",
            )
            parts = urlsplit(path)
            verdict = verifier.verify("POST", parts.path, parts.query, headers, body)
            if isinstance(verdict, SigV4Failure):
                raise KmsError.of(INVALID_SIGNATURE, verdict.message)
        return identity

    def serve(
        self,
        op: Operation,
        identity: Identity,
        payload: Mapping[str, Any],
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """Answer one identified request as the operation table says."""
        recipient = payload.get("Recipient") is not None
        if op.treatment is Treatment.IMPLEMENTED or (op.takes_recipient and recipient):
            handlers: dict[str, Callable[[Identity, Mapping[str, Any]], dict[str, Any]]] = {
                "Decrypt": self.decrypt,
                "ReEncrypt": self.re_encrypt,
                "GenerateDataKey": self.generate_data_key,
                "GenerateDataKeyPair": self.generate_data_key_pair,
                "GenerateDataKeyPairWithoutPlaintext": self.generate_data_key_pair_without_plaintext,
                "GenerateRandom": self.generate_random,
                "DeriveSharedSecret": self.derive_shared_secret,
            }
            answer = handlers[op.name](identity, payload)
            return 200, [("Content-Type", JSON_CONTENT_TYPE)], json.dumps(answer).encode()
        if "Recipient" in payload:
            raise validation(f"{op.name} takes no Recipient")
        if op.treatment is Treatment.GATED and op.key_member is not None:
            self._gate(op, op.key_member, identity, payload)
        reply = self.forward("POST", "/", headers, body)
        if op.changes_state:
            self.keys.invalidate()
        if op.replaces_policy and reply[0] == 200:
            self._adopt_policy(payload)
        return reply

    def _adopt_policy(self, payload: Mapping[str, Any]) -> None:
        """After a ``PutKeyPolicy`` the backend accepted: enforce the new policy on a fronted key."""
        key, document = payload.get("KeyId"), payload.get("Policy")
        if not isinstance(key, str) or not isinstance(document, str):
            return
        key_arn = self.keys.lookup(key).arn if _is_alias(key) else key
        if not self.fronts(key_arn):
            return
        try:
            policy = json.loads(document)
        except ValueError:
            policy = None
        # A document the evaluator cannot read denies everything, as an unreadable policy would.
        self.set_key_policy(key_arn, policy if isinstance(policy, dict) else {"Statement": "unreadable"})

    def _gate(self, op: Operation, key_member: str, identity: Identity, payload: Mapping[str, Any]) -> None:
        """For a fronted key: refuse what its state or its key policy does not allow."""
        key = payload.get(key_member)
        if not isinstance(key, str) or not key:
            return  # the backend refuses the malformed request itself
        if not _is_alias(key) and not self.fronts(key):
            return
        # An alias the backend does not know is NotFound in AWS's words (raised by the lookup),
        # not forwarded for the backend to word.
        info = self.keys.lookup(key)
        if not self.fronts(info.arn):
            return
        self._authorize(identity, op.action, info.arn, _request_condition_keys(payload), operation=op.name)
        check_state(info, op.use)
        # Answered here: moto carries out some requests that ask for a dry run.
        _check_dry_run(payload)

    def _fronted_policy(self, key_arn: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._policies.get(_key_id(key_arn))

    def _policy_for(self, key_arn: str) -> Mapping[str, Any]:
        policy = self._fronted_policy(key_arn)
        if policy is not None:
            return policy
        try:
            answer = self._backend.call("GetKeyPolicy", {"KeyId": key_arn, "PolicyName": "default"})
            document = answer["Policy"]
            loaded: Mapping[str, Any] = json.loads(document)
            return loaded
        except (AwsJsonError, KeyError, TypeError, ValueError):
            raise KmsError.of(ACCESS_DENIED_OTHER, f"no key policy is known for {key_arn}") from None

    def _authorize(
        self,
        identity: Identity,
        action: str,
        key_arn: str,
        condition_keys: Mapping[str, list[str]],
        policy: Mapping[str, Any] | None = None,
        *,
        operation: str | None = None,
    ) -> None:
        """Evaluate the key policy of ``key_arn`` (or ``policy``); record the decision; refuse a denial."""
        operation = operation or action.removeprefix("kms:")
        if policy is None:
            try:
                policy = self._policy_for(key_arn)
            except KmsError:
                self._decided(operation, key_arn, identity.principal_arn, False, "no key policy is known")
                raise
        keys: dict[str, list[str]] = {
            "aws:PrincipalArn": [identity.principal_arn],
            "aws:PrincipalAccount": [identity.account],
            "aws:PrincipalIsAWSService": ["false"],
            "aws:ViaAWSService": ["false"],
            "kms:CallerAccount": [identity.account],
        }
        keys.update({f"aws:PrincipalTag/{k}": [v] for k, v in identity.tags.items()})
        keys.update({k: [v] for k, v in identity.context.items()})
        keys.update(condition_keys)
        request = RequestContext(
            principal_arn=identity.principal_arn,
            action=action,
            resource=key_arn,
            keys=keys,
            iam_allowed_actions=identity.iam_allowed_actions,
        )
        decision = evaluate(policy, request)
        reason = f"{action}: {decision.reason}"
        if not decision.allowed:
            unmatched = explain(policy, request)
            if unmatched:
                reason += "; conditions not matched: " + "; ".join(unmatched)
        self._decided(operation, key_arn, identity.principal_arn, decision.allowed, reason)
        if not decision.allowed:
            raise access_denied(
                identity.principal_arn,
                action,
                key_arn,
                explicit=decision.reason.startswith("explicitly denied"),
            )

    def _decided(
        self, operation: str, key_arn: str | None, principal: str | None, allowed: bool, reason: str
    ) -> None:
        """Log and record one decision. ``reason`` names statements and condition keys, never values."""
        self.decisions.record(
            Decision(
                at=time.time(),
                operation=operation,
                key_id=key_arn,
                principal=principal,
                allowed=allowed,
                reason=reason,
            )
        )
        _log.info(
            "kms front decision",
            extra={
                "fields": {
                    "operation": operation,
                    "key_id": key_arn,
                    "principal": principal,
                    "allowed": allowed,
                    "reason": reason,
                }
            },
        )

    def _recipient(
        self, operation: str, identity: Identity, body: Mapping[str, Any], key: str | None
    ) -> tuple[AttestationDocument, rsa.RSAPublicKey] | None:
        """The request's verified ``Recipient``, if it has one; an unusable one is a recorded denial."""
        recipient = body.get("Recipient")
        if recipient is None:
            return None
        try:
            return self._verified_recipient(recipient)
        except KmsError as exc:
            # The document's problem by its kind only: the message may quote what the document says.
            kind = (
                exc.message.split(":", 1)[0] if exc.error_type == ACCESS_DENIED_OTHER.name else exc.error_type
            )
            self._decided(operation, key, identity.principal_arn, False, f"Recipient refused: {kind}")
            raise

    def _backend_call(self, operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self._backend.call(operation, payload)
        except BackendUnreachable as exc:
            raise KmsError.of(INTERNAL, exc.message) from None
        except AwsJsonError as exc:
            if exc.code == INVALID_CIPHERTEXT.name:
                # AWS answers it without a message; LocalStack writes one of its own.
                raise KmsError.of(INVALID_CIPHERTEXT) from None
            raise KmsError(exc.code, exc.message, exc.status) from None

    def _backend_blob(self, answer: Mapping[str, Any], name: str) -> bytes:
        try:
            return base64.b64decode(answer[name], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise KmsError.of(INTERNAL, f"the backend's answer has no valid {name}") from None

    def alias_arn(self, alias: str) -> str:
        """``alias`` as an ARN: a bare ``alias/...`` is this region's and account's."""
        if alias.startswith("arn:"):
            return alias
        return f"arn:aws:kms:{self.region}:{self.account_id}:{alias}"

    def _describe(self, key: str) -> KeyInfo:
        """The backend's ``DescribeKey`` of ``key`` (id, ARN, alias name or alias ARN).

        moto refuses ``DescribeKey`` for any key whose policy has a ``Deny`` on ``kms:*``
        (it ignores conditions), as the vault policy does; such a key is then found by
        listing keys and aliases (never policy-checked), and its state is unknown -- moto
        would not honour it anyway.
        """
        if not _is_alias(key) and not (key.startswith("arn:") and ":key/" in key) and not _KEY_ID.match(key):
            raise KmsError.of(INVALID_KEY_ID, key=key)
        try:
            answer = self._backend_call("DescribeKey", {"KeyId": key})
        except KmsError as exc:
            if exc.error_type == "NotFoundException" and key.startswith("arn:") and ":key/" in key:
                raise KmsError.of(KEY_NOT_FOUND, key_arn=key) from None
            if exc.error_type == "NotFoundException" and _is_alias(key):
                # AWS's text, not the backend's (LocalStack: "Unable to find KMS alias ...").
                raise KmsError.of(ALIAS_NOT_FOUND, alias_arn=self.alias_arn(key)) from None
            if exc.error_type != "AccessDeniedException":
                raise
            return KeyInfo(self._listed_key_arn(key), None)
        metadata = answer.get("KeyMetadata")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("Arn"), str):
            raise KmsError.of(INTERNAL, "the backend's DescribeKey answer has no key ARN")
        state, usage, spec = (metadata.get(name) for name in ("KeyState", "KeyUsage", "KeySpec"))
        return KeyInfo(
            str(metadata["Arn"]),
            state if isinstance(state, str) else None,
            usage=usage if isinstance(usage, str) else None,
            spec=spec if isinstance(spec, str) else None,
        )

    def _listed_key_arn(self, key: str) -> str:
        if key.startswith("arn:") and ":key/" in key:
            return key
        key_id = key
        if _is_alias(key):
            alias = key[key.index("alias/") :]
            aliases = self._listing("ListAliases", "Aliases")
            key_id = next((str(a.get("TargetKeyId")) for a in aliases if a.get("AliasName") == alias), "")
        for entry in self._listing("ListKeys", "Keys"):
            if entry.get("KeyId") == key_id:
                return str(entry["KeyArn"])
        raise KmsError("NotFoundException", f"Key '{key}' does not exist")

    def _listing(self, operation: str, field_name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        marker: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page = self._backend_call(operation, {"Marker": marker} if marker else {})
            items.extend(page.get(field_name, []))
            marker = page.get("NextMarker")
            if not page.get("Truncated") or not marker:
                break
        return items

    def _verified_recipient(self, recipient: Any) -> tuple[AttestationDocument, rsa.RSAPublicKey]:
        if not isinstance(recipient, dict):
            raise validation("Recipient must be an object")
        algorithm = recipient.get("KeyEncryptionAlgorithm", KEY_ENCRYPTION_ALGORITHM)
        if algorithm != KEY_ENCRYPTION_ALGORITHM:
            raise validation(f"KeyEncryptionAlgorithm must be {KEY_ENCRYPTION_ALGORITHM}")
        raw = _blob(recipient.get("AttestationDocument"), "Recipient.AttestationDocument")
        denied = ACCESS_DENIED_OTHER
        try:
            document = self._documents.verify(
                raw, self.trusted_root, now=self.clock(), max_age=self.max_document_age
            )
        except AttestationError as exc:
            raise KmsError.of(
                denied, f"The attestation document is not valid ({exc.reason}): {exc}"
            ) from None
        if document.public_key is None:
            raise KmsError.of(denied, "The attestation document does not contain a public key")
        try:
            public_key = load_der_public_key(document.public_key)
        except ValueError:
            raise KmsError.of(
                denied, "The attestation document's public key is not a DER public key"
            ) from None
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < MIN_RSA_BITS:
            raise KmsError.of(
                denied, "The attestation document's public key is not an RSA key of 2048 bits or more"
            )
        return document, public_key

    def _open(
        self, ciphertext: bytes, context: Mapping[str, str], requested: str | None, algorithm: Any
    ) -> tuple[str, bytes, Any]:
        """The backend's decryption: (key ARN, plaintext, algorithm); ``requested`` must be its key.

        The backend is not given ``requested``: moto answers a mismatch with
        ``AccessDeniedException``, AWS with ``IncorrectKeyException``.
        """
        wanted = self.keys.lookup(requested) if requested is not None else None
        request: dict[str, Any] = {"CiphertextBlob": _b64(ciphertext)}
        if context:
            request["EncryptionContext"] = dict(context)
        if algorithm is not None:
            request["EncryptionAlgorithm"] = algorithm
        try:
            result = self._backend_call("Decrypt", request)
        except KmsError as exc:
            if exc.error_type == CIPHERTEXT_KEY_UNKNOWN.name:
                raise KmsError.of(CIPHERTEXT_KEY_UNKNOWN) from None
            raise
        key_arn = str(result.get("KeyId", ""))
        if wanted is not None and wanted.arn != key_arn:
            raise KmsError.of(INCORRECT_KEY)
        return key_arn, self._backend_blob(result, "Plaintext"), result.get("EncryptionAlgorithm")

    def decrypt(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        context = _encryption_context(body)
        attested = self._recipient("Decrypt", identity, body, None)
        ciphertext = _blob(body.get("CiphertextBlob"), "CiphertextBlob")
        requested = _optional_string(body, "KeyId")
        key_arn, plaintext, algorithm = self._open(
            ciphertext, context, requested, body.get("EncryptionAlgorithm")
        )
        condition_keys = _context_keys(context)
        if attested is not None:
            condition_keys.update(_attestation_keys(attested[0]))
        self._authorize(identity, "kms:Decrypt", key_arn, condition_keys)
        check_state(self.keys.lookup(key_arn), KeyUse.CRYPTOGRAPHIC)
        _check_dry_run(body)
        answer: dict[str, Any] = {"KeyId": key_arn, "EncryptionAlgorithm": algorithm}
        if attested is None:
            answer["Plaintext"] = _b64(plaintext)
        else:
            answer["CiphertextForRecipient"] = _b64(envelope(plaintext, attested[1]))
        return {k: v for k, v in answer.items() if v is not None}

    def re_encrypt(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        """``ReEncrypt``: ``kms:ReEncryptFrom`` on the source key, ``kms:ReEncryptTo`` on the destination."""
        ciphertext = _blob(body.get("CiphertextBlob"), "CiphertextBlob")
        destination_key = _string(body, "DestinationKeyId")
        source_context = _encryption_context(body, "SourceEncryptionContext")
        destination_context = _encryption_context(body, "DestinationEncryptionContext")
        destination = self.keys.lookup(destination_key)
        source_arn, plaintext, source_algorithm = self._open(
            ciphertext,
            source_context,
            _optional_string(body, "SourceKeyId"),
            body.get("SourceEncryptionAlgorithm"),
        )
        same_key = ["true" if source_arn == destination.arn else "false"]
        for action, key_arn, context in (
            ("kms:ReEncryptFrom", source_arn, source_context),
            ("kms:ReEncryptTo", destination.arn, destination_context),
        ):
            policy = self._fronted_policy(key_arn)
            if policy is not None:
                keys = {**_context_keys(context), "kms:ReEncryptOnSameKey": same_key}
                self._authorize(identity, action, key_arn, keys, policy, operation="ReEncrypt")
        check_state(self.keys.lookup(source_arn), KeyUse.CRYPTOGRAPHIC)
        check_state(destination, KeyUse.CRYPTOGRAPHIC)
        _check_dry_run(body)
        request: dict[str, Any] = {"KeyId": destination.arn, "Plaintext": _b64(plaintext)}
        if destination_context:
            request["EncryptionContext"] = destination_context
        if body.get("DestinationEncryptionAlgorithm") is not None:
            request["EncryptionAlgorithm"] = body["DestinationEncryptionAlgorithm"]
        del plaintext
        sealed = self._backend_call("Encrypt", request)
        answer = {
            "CiphertextBlob": _b64(self._backend_blob(sealed, "CiphertextBlob")),
            "SourceKeyId": source_arn,
            "KeyId": str(sealed.get("KeyId", destination.arn)),
            "SourceEncryptionAlgorithm": source_algorithm,
            "DestinationEncryptionAlgorithm": sealed.get("EncryptionAlgorithm"),
        }
        return {k: v for k, v in answer.items() if v is not None}

    def _recipient_operation(
        self, operation: str, identity: Identity, body: Mapping[str, Any], extra_keys: Mapping[str, list[str]]
    ) -> tuple[KeyInfo, dict[str, str], tuple[AttestationDocument, rsa.RSAPublicKey] | None]:
        """The checks of a key operation that may take a Recipient, in KMS's order.

        The document first (an unusable one is refused whoever asks), then the key policy
        with the document's values and ``extra_keys``, the key state, and ``DryRun``.
        """
        key = _string(body, "KeyId")
        context = _encryption_context(body)
        attested = self._recipient(operation, identity, body, key)
        info = self.keys.lookup(key)
        condition_keys = {**_context_keys(context), **extra_keys}
        if attested is not None:
            condition_keys.update(_attestation_keys(attested[0]))
        self._authorize(identity, f"kms:{operation}", info.arn, condition_keys)
        check_state(info, KeyUse.CRYPTOGRAPHIC)
        _check_dry_run(body)
        return info, context, attested

    def generate_data_key(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        """``GenerateDataKey`` with a ``Recipient``: the backend's data key, sealed for the document's key."""
        spec = _optional_string(body, "KeySpec")
        count = _byte_count(body)
        if (spec is None) == (count is None):
            raise validation("Please specify either number of bytes or key spec.")
        info, context, attested = self._recipient_operation("GenerateDataKey", identity, body, {})
        request: dict[str, Any] = {"KeyId": info.arn}
        request.update({"KeySpec": spec} if spec is not None else {"NumberOfBytes": count})
        if context:
            request["EncryptionContext"] = context
        generated = self._backend_call("GenerateDataKey", request)
        plaintext = self._backend_blob(generated, "Plaintext")
        answer: dict[str, Any] = {
            "KeyId": str(generated.get("KeyId", info.arn)),
            "CiphertextBlob": _b64(self._backend_blob(generated, "CiphertextBlob")),
        }
        if attested is None:
            answer["Plaintext"] = _b64(plaintext)
        else:
            answer["CiphertextForRecipient"] = _b64(envelope(plaintext, attested[1]))
        del plaintext
        return answer

    def generate_data_key_pair(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        """``GenerateDataKeyPair``: the private key in plaintext, or for a Recipient sealed to its key."""
        return self._data_key_pair("GenerateDataKeyPair", identity, body, with_plaintext=True)

    def generate_data_key_pair_without_plaintext(
        self, identity: Identity, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if "Recipient" in body:
            raise validation("GenerateDataKeyPairWithoutPlaintext takes no Recipient")
        return self._data_key_pair(
            "GenerateDataKeyPairWithoutPlaintext", identity, body, with_plaintext=False
        )

    def _data_key_pair(
        self, operation: str, identity: Identity, body: Mapping[str, Any], *, with_plaintext: bool
    ) -> dict[str, Any]:
        spec = _string(body, "KeyPairSpec")
        info, context, attested = self._recipient_operation(
            operation, identity, body, {"kms:DataKeyPairSpec": [spec]}
        )
        make = KEY_PAIR_SPECS.get(spec)
        if make is None:
            raise validation(f"KeyPairSpec must be one of {', '.join(KEY_PAIR_SPECS)}")
        private_key = make()
        public_der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        private_der = private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        del private_key
        encrypted = self._backend_call(
            "Encrypt",
            {
                "KeyId": info.arn,
                "Plaintext": _b64(private_der),
                **({"EncryptionContext": context} if context else {}),
            },
        )
        answer: dict[str, Any] = {
            "KeyId": info.arn,
            "KeyPairSpec": spec,
            "PublicKey": _b64(public_der),
            "PrivateKeyCiphertextBlob": _b64(self._backend_blob(encrypted, "CiphertextBlob")),
        }
        if attested is not None:
            answer["CiphertextForRecipient"] = _b64(envelope(private_der, attested[1]))
        elif with_plaintext:
            answer["PrivateKeyPlaintext"] = _b64(private_der)
        del private_der
        return answer

    def generate_random(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        """``GenerateRandom`` with a ``Recipient``: no key, so no key policy; the document is verified."""
        count = _byte_count(body)
        if count is None:
            raise validation("NumberOfBytes is required")
        attested = self._recipient("GenerateRandom", identity, body, None)
        if attested is None:
            # serve() forwards a GenerateRandom without a Recipient; this is a direct call without one.
            raise missing("Recipient")
        self._decided(
            "GenerateRandom",
            None,
            identity.principal_arn,
            True,
            "attestation verified; no key policy applies",
        )
        request: dict[str, Any] = {"NumberOfBytes": count}
        if body.get("CustomKeyStoreId") is not None:
            request["CustomKeyStoreId"] = body["CustomKeyStoreId"]
        random = self._backend_blob(self._backend_call("GenerateRandom", request), "Plaintext")
        return {"CiphertextForRecipient": _b64(envelope(random, attested[1]))}

    def derive_shared_secret(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        """``DeriveSharedSecret``: ECDH of the key's private key with ``PublicKey``.

        The secret comes from :attr:`key_agreement` when set (moto holds the key but has no
        ``DeriveSharedSecret``), else from the backend's own ``DeriveSharedSecret``.
        """
        algorithm = _string(body, "KeyAgreementAlgorithm")
        peer_der = _blob(body.get("PublicKey"), "PublicKey")
        if algorithm != "ECDH":
            raise validation("KeyAgreementAlgorithm must be ECDH")
        info, _, attested = self._recipient_operation(
            "DeriveSharedSecret", identity, body, {"kms:KeyAgreementAlgorithm": [algorithm]}
        )
        if info.usage is not None and info.usage != "KEY_AGREEMENT":
            raise KmsError.of(INVALID_KEY_USAGE, f"{info.arn} key usage is {info.usage} which is not valid")
        curve = _AGREEMENT_CURVES.get(info.spec or "")
        if info.spec is not None and curve is None:
            raise KmsError.of(INVALID_KEY_USAGE, f"{info.arn} has key spec {info.spec}, not an ECC NIST key")
        try:
            peer = load_der_public_key(peer_der)
        except ValueError:
            raise validation("PublicKey is not a DER-encoded X.509 public key") from None
        if not isinstance(peer, ec.EllipticCurvePublicKey) or (
            curve is not None and not isinstance(peer.curve, curve)
        ):
            raise validation(f"PublicKey must be an ECC public key on the curve of {info.spec}")
        if self.key_agreement is not None:
            secret = self.key_agreement(info.arn, peer_der)
        else:
            derived = self._backend_call(
                "DeriveSharedSecret",
                {"KeyId": info.arn, "KeyAgreementAlgorithm": algorithm, "PublicKey": _b64(peer_der)},
            )
            secret = self._backend_blob(derived, "SharedSecret")
        answer: dict[str, Any] = {"KeyId": info.arn, "KeyAgreementAlgorithm": algorithm}
        if attested is None:
            answer["SharedSecret"] = _b64(secret)
        else:
            answer["CiphertextForRecipient"] = _b64(envelope(secret, attested[1]))
        del secret
        return answer

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        """Send the request to the backend unchanged; return its status, headers and body."""
        try:
            return self.upstream.send(method, path, headers, body)
        except OSError as exc:
            raise KmsError.of(INTERNAL, f"the backend is unreachable: {type(exc).__name__}") from None


#: The front's answers to requests refused before their body is read, by status: KMS's error types.
FRAMING_ERRORS = {
    400: ("SerializationException", None),
    411: ("SerializationException", "Content-Length is required"),
    413: ("ValidationException", "the request body is too large"),
    501: ("UnsupportedOperationException", None),
    503: ("ServiceUnavailableException", None),
}


class _Handler(LoopbackHandler):
    owner: KmsFront
    max_body = MAX_BODY
    length_required = True
    server_version = "kms-front"

    @classmethod
    def error_reply(cls, error: RequestError) -> tuple[list[tuple[str, str]], bytes]:
        error_type, message = FRAMING_ERRORS.get(error.status, ("SerializationException", None))
        return [("Content-Type", JSON_CONTENT_TYPE)], KmsError(
            error_type, message or error.message, error.status
        ).body()

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("kms front request", extra={"fields": {"line": format % args}})

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        sent = {k.lower() for k, _ in headers or []}
        for name, value in headers or []:
            self.send_header(name, value)
        if "content-type" not in sent:
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        front = self.owner
        body = self.read_body()
        if body is None:
            return
        try:
            headers = list(self.headers.items())
            target = self.headers.get("X-Amz-Target", "")
            name = target.removeprefix(TARGET_PREFIX)
            op = operation(name) if target.startswith(TARGET_PREFIX) else None
            if op is None or urlsplit(self.path).path != "/":
                # KMS answers an unknown target this way; nothing unknown reaches the backend.
                raise KmsError.of(UNKNOWN_OPERATION)
            front.apply_faults(name)
            payload = self._json(body)
            identity = front.identify(headers, self.path, body)
            front.apply_quotas(name, payload)
            status, response_headers, data = front.serve(op, identity, payload, headers, body)
            self._send(status, data, response_headers)
        except KmsError as error:
            self._send(error.status, error.body())

    def do_GET(self) -> None:
        # KMS has no GET API; the backend's own pages (moto's /moto-api) stay unreachable.
        self._send(400, KmsError.of(UNKNOWN_OPERATION).body())

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise KmsError.of(SERIALIZATION, "the request body is not JSON") from None
        if not isinstance(payload, dict):
            raise KmsError.of(SERIALIZATION, "the request body must be a JSON object")
        return payload
