"""The KMS attestation front: what KMS does with a Recipient, in front of moto or LocalStack.

Neither moto nor LocalStack understands ``Recipient`` (both answer ``Decrypt`` with
``Plaintext`` regardless) and moto lacks ``GenerateDataKeyPairWithoutPlaintext``. This
HTTP service speaks the KMS JSON protocol (``X-Amz-Target: TrentService.*``,
``application/x-amz-json-1.1``) on 127.0.0.1 and handles two operations itself:

``Decrypt``
    With a ``Recipient``: verify the attestation document (COSE signature, chain to
    the emulator's root, validity, freshness), ask the backend for the plaintext, then
    evaluate the key policy with the document's values
    (``kms:RecipientAttestation:ImageSha384`` = PCR0, ``...:PCR<n>``), the encryption
    context and the caller, and answer ``CiphertextForRecipient`` (CMS EnvelopedData to
    the document's RSA key) -- never ``Plaintext``. Without a ``Recipient`` the same
    policy decides (so the instance role is refused: its statement needs attestation
    values, and the root statement cannot grant Decrypt).
``GenerateDataKeyPairWithoutPlaintext``
    Policy-checked (encryption context and ``kms:DataKeyPairSpec`` included);
    ``ECC_NIST_P384`` only. A real P-384 pair; the private key (DER PKCS#8) is encrypted
    by the backend's ``Encrypt`` under the same encryption context, so the backend's
    ``Decrypt`` opens it later.

Every other request passes through to the backend unchanged -- except one that
carries a ``Recipient``, which is refused rather than forwarded to a backend that would
ignore it. Any failed check answers ``AccessDeniedException``.

The caller is identified by the access key id in its SigV4 ``Authorization`` header,
looked up in a configured map (access key id → :class:`Identity`). When an identity
has its secret key, the signature itself is verified too. The key policy of a key is
the one set on the front, or else the backend's ``GetKeyPolicy`` document.

Known difference from KMS: the backend is asked to decrypt before the policy is
evaluated (the front learns the key only from the backend's answer), so a request that
is both unauthorised and has a wrong encryption context gets ``InvalidCiphertextException``
where KMS would say ``AccessDeniedException``; no plaintext leaves the front either way.

Fault hooks (:class:`Faults`): throttle the next N requests with
``ThrottlingException``, or add latency to every request.
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
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_public_key,
)

from emulator.aws.json_client import KMS, AwsJsonClient, AwsJsonError, BackendUnreachable
from emulator.aws.kms.cms import envelope
from emulator.aws.kms.policy import RequestContext, evaluate
from emulator.aws.sigv4 import Principal, SigV4Failure, SigV4Verifier
from emulator.aws.upstream import Upstream, upstream_for
from emulator.host.http import LoopbackServer
from emulator.nitro.attestation import AttestationDocument, AttestationError, DocumentVerifier

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService."
KEY_ENCRYPTION_ALGORITHM = "RSAES_OAEP_SHA_256"
SUPPORTED_KEY_PAIR_SPEC = "ECC_NIST_P384"
#: How old an attestation document may be (the enclave renews its own well before).
DEFAULT_MAX_DOCUMENT_AGE = dt.timedelta(minutes=5)
MAX_BODY = 1024 * 1024
MIN_RSA_BITS = 2048
_MAX_LIST_PAGES = 100
_CREDENTIAL = re.compile(r"Credential=(?P<key>[A-Za-z0-9]+)/")
_log = logging.getLogger(__name__)


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


class KmsError(Exception):
    """An error answer in the KMS JSON protocol."""

    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status

    def body(self) -> bytes:
        return json.dumps({"__type": self.error_type, "message": self.message}).encode()


def access_denied(message: str) -> KmsError:
    return KmsError("AccessDeniedException", message)


def _check_dry_run(body: Mapping[str, Any]) -> None:
    """Like KMS: an allowed request with ``DryRun`` is answered 412 instead of being carried out."""
    if body.get("DryRun") is True:
        raise KmsError(
            "DryRunOperationException", "The request would have succeeded, but the DryRun option is set.", 412
        )


class Faults:
    """Switchable faults: ``throttle(n)`` and ``delay_ms``; safe to change while serving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttles: list[tuple[str | None, int]] = []
        self.delay_ms = 0

    def throttle(self, count: int = 1, operation: str | None = None) -> None:
        """Answer the next ``count`` requests (for ``operation`` only, if named) with throttling."""
        with self._lock:
            self._throttles.append((operation, count))

    def clear(self) -> None:
        with self._lock:
            self._throttles.clear()
            self.delay_ms = 0

    def before(self, operation: str) -> None:
        if self.delay_ms > 0:
            time.sleep(self.delay_ms / 1000)
        with self._lock:
            for index, (wanted, remaining) in enumerate(self._throttles):
                if wanted in (None, operation):
                    if remaining <= 1:
                        del self._throttles[index]
                    else:
                        self._throttles[index] = (wanted, remaining - 1)
                    raise KmsError("ThrottlingException", "Rate exceeded")


def _key_id(key: str) -> str:
    """The key id of a key id or key ARN (``arn:...:key/<id>``)."""
    return key.rsplit("key/", 1)[-1] if key.startswith("arn:") else key


def _blob(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise KmsError("ValidationException", f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KmsError("SerializationException", f"{name} is not valid base64") from None


def _encryption_context(body: Mapping[str, Any]) -> dict[str, str]:
    context = body.get("EncryptionContext") or {}
    if not isinstance(context, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise KmsError("ValidationException", "EncryptionContext must map strings to strings")
    return context


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
    ) -> None:
        self.upstream = upstream_for(backend)
        self.trusted_root = trusted_root
        self.region = region
        self.max_document_age = max_document_age
        self.clock = clock
        self.faults = Faults()
        self._identities: dict[str, Identity] = {}
        self._policies: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        for access_key_id, identity in (identities or {}).items():
            self.add_identity(access_key_id, identity)
        for key, policy in (key_policies or {}).items():
            self.set_key_policy(key, policy)
        self._backend = AwsJsonClient(self.upstream, KMS, region=region, credentials=backend_credentials)
        self._documents = DocumentVerifier()
        self._server = LoopbackServer(_Handler, self, name="kms-front", host=host, port=port)

    # -- configuration -------------------------------------------------------------------

    def add_identity(self, access_key_id: str, identity: Identity | str) -> None:
        """Map an access key id to a principal (an ARN string is shorthand for ``Identity(arn)``)."""
        with self._lock:
            self._identities[access_key_id] = (
                identity if isinstance(identity, Identity) else Identity(principal_arn=identity)
            )

    def set_key_policy(self, key: str, policy: Mapping[str, Any]) -> None:
        """Enforce ``policy`` for ``key`` (key id or key ARN)."""
        with self._lock:
            self._policies[_key_id(key)] = json.loads(json.dumps(policy))

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
            raise KmsError("MissingAuthenticationTokenException", "Missing Authentication Token")
        with self._lock:
            identity = self._identities.get(match["key"])
        if identity is None:
            raise KmsError(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if identity.secret_access_key is not None:
            verifier = SigV4Verifier(
                [Principal(match["key"], identity.secret_access_key, identity.principal_arn)],
                self.region,
                service="kms",
            )
            parts = urlsplit(path)
            verdict = verifier.verify("POST", parts.path, parts.query, headers, body)
            if isinstance(verdict, SigV4Failure):
                raise KmsError("InvalidSignatureException", verdict.message)
        return identity

    def _policy_for(self, key_arn: str) -> Mapping[str, Any]:
        with self._lock:
            policy = self._policies.get(_key_id(key_arn))
        if policy is not None:
            return policy
        try:
            answer = self._backend.call("GetKeyPolicy", {"KeyId": key_arn, "PolicyName": "default"})
            document = answer["Policy"]
            loaded: Mapping[str, Any] = json.loads(document)
            return loaded
        except (AwsJsonError, KeyError, TypeError, ValueError):
            raise access_denied(f"no key policy is known for {key_arn}") from None

    def _authorize(
        self,
        identity: Identity,
        action: str,
        key_arn: str,
        condition_keys: Mapping[str, list[str]],
    ) -> None:
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
        decision = evaluate(self._policy_for(key_arn), request)
        _log.info(
            "kms front decision",
            extra={"fields": {"action": action, "allowed": decision.allowed, "reason": decision.reason}},
        )
        if not decision.allowed:
            raise access_denied(
                f"User: {identity.principal_arn} is not authorized to perform: {action} on resource: "
                f"{key_arn} because no resource-based policy allows the {action} action "
                f"({decision.reason})"
            )

    def _backend_call(self, operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self._backend.call(operation, payload)
        except BackendUnreachable as exc:
            raise KmsError("KMSInternalException", exc.message, 500) from None
        except AwsJsonError as exc:
            raise KmsError(exc.code, exc.message, exc.status) from None

    def _backend_blob(self, answer: Mapping[str, Any], name: str) -> bytes:
        try:
            return base64.b64decode(answer[name], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise KmsError("KMSInternalException", f"the backend's answer has no valid {name}", 500) from None

    def _key_arn(self, key: str) -> str:
        """Resolve a key id, key ARN, alias name or alias ARN to the key's ARN.

        ``DescribeKey`` would be the obvious call, but moto refuses it for any key whose
        policy has a ``Deny`` on ``kms:*`` (it ignores conditions), as the vault policy does.
        Listing keys and aliases is never policy-checked.
        """
        if key.startswith("arn:") and ":key/" in key:
            return key
        key_id = key
        if key.startswith("alias/") or ":alias/" in key:
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
            raise KmsError("ValidationException", "Recipient must be an object")
        algorithm = recipient.get("KeyEncryptionAlgorithm", KEY_ENCRYPTION_ALGORITHM)
        if algorithm != KEY_ENCRYPTION_ALGORITHM:
            raise KmsError(
                "ValidationException", f"KeyEncryptionAlgorithm must be {KEY_ENCRYPTION_ALGORITHM}"
            )
        raw = _blob(recipient.get("AttestationDocument"), "Recipient.AttestationDocument")
        try:
            document = self._documents.verify(
                raw, self.trusted_root, now=self.clock(), max_age=self.max_document_age
            )
        except AttestationError as exc:
            raise access_denied(f"The attestation document is not valid ({exc.reason}): {exc}") from None
        if document.public_key is None:
            raise access_denied("The attestation document does not contain a public key")
        try:
            public_key = load_der_public_key(document.public_key)
        except ValueError:
            raise access_denied("The attestation document's public key is not a DER public key") from None
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < MIN_RSA_BITS:
            raise access_denied(
                "The attestation document's public key is not an RSA key of 2048 bits or more"
            )
        return document, public_key

    def decrypt(self, identity: Identity, body: Mapping[str, Any]) -> dict[str, Any]:
        context = _encryption_context(body)
        recipient = body.get("Recipient")
        attested = self._verified_recipient(recipient) if recipient is not None else None
        ciphertext = _blob(body.get("CiphertextBlob"), "CiphertextBlob")
        request: dict[str, Any] = {"CiphertextBlob": _b64(ciphertext)}
        if context:
            request["EncryptionContext"] = context
        for name in ("KeyId", "EncryptionAlgorithm"):
            if name in body:
                request[name] = body[name]
        result = self._backend_call("Decrypt", request)
        key_arn = str(result.get("KeyId", ""))
        plaintext = self._backend_blob(result, "Plaintext")
        condition_keys = {f"kms:EncryptionContext:{k}": [v] for k, v in context.items()}
        if context:
            condition_keys["kms:EncryptionContextKeys"] = list(context)
        if attested is not None:
            document = attested[0]
            condition_keys.update(
                {f"kms:RecipientAttestation:PCR{i}": [value.hex()] for i, value in document.pcrs.items()}
            )
            if 0 in document.pcrs:
                condition_keys["kms:RecipientAttestation:ImageSha384"] = [document.pcrs[0].hex()]
        self._authorize(identity, "kms:Decrypt", key_arn, condition_keys)
        _check_dry_run(body)
        answer: dict[str, Any] = {"KeyId": key_arn, "EncryptionAlgorithm": result.get("EncryptionAlgorithm")}
        if attested is None:
            answer["Plaintext"] = _b64(plaintext)
        else:
            answer["CiphertextForRecipient"] = _b64(envelope(plaintext, attested[1]))
        return {k: v for k, v in answer.items() if v is not None}

    def generate_data_key_pair_without_plaintext(
        self, identity: Identity, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        key = body.get("KeyId")
        spec = body.get("KeyPairSpec")
        if not isinstance(key, str) or not isinstance(spec, str):
            raise KmsError("ValidationException", "KeyId and KeyPairSpec are required")
        context = _encryption_context(body)
        key_arn = self._key_arn(key)
        condition_keys = {f"kms:EncryptionContext:{k}": [v] for k, v in context.items()}
        if context:
            condition_keys["kms:EncryptionContextKeys"] = list(context)
        condition_keys["kms:DataKeyPairSpec"] = [spec]
        self._authorize(identity, "kms:GenerateDataKeyPairWithoutPlaintext", key_arn, condition_keys)
        _check_dry_run(body)
        if spec != SUPPORTED_KEY_PAIR_SPEC:
            raise KmsError(
                "ValidationException", f"the emulator generates {SUPPORTED_KEY_PAIR_SPEC} key pairs only"
            )
        private_key = ec.generate_private_key(ec.SECP384R1())
        public_der = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        encrypted = self._backend_call(
            "Encrypt",
            {
                "KeyId": key_arn,
                "Plaintext": _b64(
                    private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
                ),
                **({"EncryptionContext": context} if context else {}),
            },
        )
        del private_key
        return {
            "KeyId": key_arn,
            "KeyPairSpec": spec,
            "PublicKey": _b64(public_der),
            "PrivateKeyCiphertextBlob": _b64(self._backend_blob(encrypted, "CiphertextBlob")),
        }

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request to the backend unchanged; return its status, headers and body."""
        try:
            return self.upstream.send(method, path, headers, body)
        except OSError as exc:
            raise KmsError(
                "KMSInternalException", f"the backend is unreachable: {type(exc).__name__}", 500
            ) from None


class _Handler(BaseHTTPRequestHandler):
    owner: KmsFront
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, keep-alive requests wait for a delayed ACK.
    disable_nagle_algorithm = True
    timeout = 30
    server_version = "kms-front"

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

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            # The unread body would be taken for the next request: end the connection.
            self.close_connection = True
            if length is None or not length.isdigit():
                raise KmsError("SerializationException", "Content-Length is required", 411)
            raise KmsError("ValidationException", "the request body is too large", 413)
        return self.rfile.read(int(length))

    def do_POST(self) -> None:
        front = self.owner
        try:
            body = self._body()
            headers = list(self.headers.items())
            target = self.headers.get("X-Amz-Target", "")
            operation = target.removeprefix(TARGET_PREFIX)
            front.faults.before(operation)
            if operation in ("Decrypt", "GenerateDataKeyPairWithoutPlaintext"):
                payload = self._json(body)
                identity = front.identify(headers, self.path, body)
                if operation == "Decrypt":
                    answer = front.decrypt(identity, payload)
                else:
                    answer = front.generate_data_key_pair_without_plaintext(identity, payload)
                self._send(200, json.dumps(answer).encode())
                return
            if (
                target.startswith(TARGET_PREFIX)
                and b'"Recipient"' in body
                and "Recipient" in self._json(body)
            ):
                raise KmsError(
                    "ValidationException", f"the emulator does not support Recipient on {operation}"
                )
            status, response_headers, data = front.forward("POST", self.path, headers, body)
            self._send(status, data, response_headers)
        except KmsError as error:
            self._send(error.status, error.body())

    def do_GET(self) -> None:
        try:
            status, response_headers, data = self.owner.forward(
                "GET", self.path, list(self.headers.items()), b""
            )
            self._send(status, data, response_headers)
        except KmsError as error:
            self._send(error.status, error.body())

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise KmsError("SerializationException", "the request body is not JSON") from None
        if not isinstance(payload, dict):
            raise KmsError("SerializationException", "the request body must be a JSON object")
        return payload
