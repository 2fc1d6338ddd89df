"""Decrypt-request handling inside the enclave (upstream spec 4.4; decisions D1-D3, D5, D12).

One request: validate it, parse suite and encoding, check expression lengths, check
the API's authorization when the handler is given a verifier (decision D16), obtain
the vault's private key (the costly KMS-with-attestation call, so it comes after every
check that can refuse the request), open each field with HPKE, then run the CEL
expressions. Anything that stops the whole request is a global failure
(``{"errors": [msg], "code": ...}``, no ``fields``); anything that concerns one field is
a ``null`` value plus an ``[field] ...`` entry in ``errors``.

Messages are built so that none of them carries a field value, a plaintext, key
material or a credential: they go back to the API and into logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from vault.common.authorization import (
    DECRYPT_OPERATION,
    AuthorizationError,
    AuthorizationVerifier,
    Grant,
    RequestScope,
    SignedAuthorization,
    authorizer_digest,
)
from vault.common.blind_index import (
    DECRYPT_INDEX_PARAMETERS,
    DEPLOYMENT_ID_PATTERN,
    INDEX_KEY_ID,
    PARAM_INDEX_DEPLOYMENT,
    PARAM_INDEX_KEY,
)
from vault.common.hpke import HpkeError, Recipient
from vault.common.messages import (
    MAX_ENCLAVE_FIELDS,
    MAX_EXPRESSION_LENGTH,
    Credential,
    DecryptRequest,
    EnclaveErrorCode,
    EnclaveReply,
    EnclaveRequest,
)
from vault.common.suites import Suite, SuiteError, suite_from_b64
from vault.enclave.blind_index import IndexKey, index_key_bound
from vault.enclave.encoding import EncodingError, parse_field_value, validate_request_encoding
from vault.enclave.key_decryptor import KeyDecryptError, KeyDecryptor
from vault.enclave.keys import KeyFormatError, recipient_from_pkcs8
from vault.enclave.operations import OPERATIONS, FieldOperation, OpenedFields, OperationRefused

logger = logging.getLogger(__name__)

_REGION = re.compile(r"[A-Za-z0-9-]+")
#: Upstream prints global failures truncated to this many characters.
_LOG_MESSAGE_LIMIT = 200
#: Longest name (field, expression, JSON path) quoted in a message.
_NAME_LIMIT = 64
_MAX_VALIDATION_ERRORS = 3


class ExpressionResult(Protocol):
    """What an expression engine returns: output values (JSON-ready) and error strings."""

    @property
    def values(self) -> dict[str, Any]: ...

    @property
    def errors(self) -> list[str]: ...


class ExpressionEngine(Protocol):
    """The CEL engine as the handler uses it (``vault.enclave.cel.CelEngine``)."""

    def validate(self, expressions: Mapping[str, str]) -> None:
        """Raise ``ValueError`` (``ExpressionTooLong``) if an expression must be refused."""
        ...

    def evaluate(self, fields: Mapping[str, str | None], expressions: Mapping[str, str]) -> ExpressionResult:
        """Run ``expressions`` in request order over ``fields``."""
        ...


def load_default_engine() -> ExpressionEngine | None:
    """The project's CEL engine, or ``None`` if its package is not installed."""
    try:
        # Optional: cel-python comes with the ``enclave`` extra; without it expressions are refused.
        from vault.enclave.cel import CelEngine
    except ImportError:
        return None
    engine: ExpressionEngine = CelEngine()
    return engine


class _Refusal(Exception):
    """A global failure: the whole request is answered with one error and a code."""

    def __init__(self, code: EnclaveErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _quote(name: str) -> str:
    return name if len(name) <= _NAME_LIMIT else name[:_NAME_LIMIT] + "..."


def _describe_validation(exc: ValidationError) -> str:
    # str(ValidationError) quotes the offending input, which may be a credential or a
    # ciphertext; location and rule are enough to fix a request.
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [
        f"{'.'.join(_quote(str(p)) for p in problem['loc'])}: {problem['msg']}"
        for problem in problems[:_MAX_VALIDATION_ERRORS]
    ]
    if len(problems) > _MAX_VALIDATION_ERRORS:
        parts.append(f"and {len(problems) - _MAX_VALIDATION_ERRORS} more")
    return "; ".join(parts)


def _parse_document(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refusal(
            EnclaveErrorCode.INVALID_REQUEST, f"failed to parse request: invalid UTF-8 at byte {exc.start}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Refusal(EnclaveErrorCode.INVALID_REQUEST, f"failed to parse request: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise _Refusal(
            EnclaveErrorCode.INVALID_REQUEST, f"failed to parse request: {type(exc).__name__}"
        ) from None


def _take_absent_fields(document: Any) -> tuple[list[str] | None, frozenset[str]]:
    """Remove ``null`` field values; return the original field order and the absent names.

    A caller asks for a field the vault does not hold by sending ``null`` (upstream's
    API does). Upstream fails the whole request; decision D1 answers that field with
    ``null`` and an error instead.
    """
    request = document.get("request") if isinstance(document, dict) else None
    fields = request.get("fields") if isinstance(request, dict) else None
    if not isinstance(fields, dict):
        return None, frozenset()
    absent = frozenset(name for name, value in fields.items() if value is None)
    if not absent:
        return None, absent
    order = list(fields)
    for name in absent:
        del fields[name]
    return order, absent


class RequestHandler:
    """Turns one enclave request into one reply; safe to share between threads."""

    def __init__(
        self,
        key_decryptor: KeyDecryptor,
        cel: ExpressionEngine | None = None,
        *,
        authorizer: AuthorizationVerifier | None = None,
        operations: Mapping[str, FieldOperation] | None = None,
    ) -> None:
        """``authorizer``: when given, every request must carry an authorization it accepts,
        and the vault key is asked for under that authorization's key (D16).
        ``operations``: what a request's ``operation`` may name besides a decrypt."""
        self._key_decryptor = key_decryptor
        self._operations = OPERATIONS if operations is None else operations
        self._authorizer = authorizer
        self._cel = cel
        self._cel_resolved = cel is not None
        self._cel_lock = threading.Lock()

    def handle(self, raw: bytes) -> EnclaveReply:
        """Handle one framed request body; never raises."""
        started = time.perf_counter()
        try:
            document = _parse_document(raw)
            order, absent = _take_absent_fields(document)
            try:
                request = EnclaveRequest.model_validate(document)
            except ValidationError as exc:
                raise _Refusal(
                    EnclaveErrorCode.INVALID_REQUEST, f"invalid request: {_describe_validation(exc)}"
                ) from None
            reply = self._process(request, order, absent)
        except _Refusal as refusal:
            reply = EnclaveReply.failure(refusal.code, refusal.message)
        except Exception as exc:  # noqa: BLE001 - the reply is the only way out of the enclave
            reply = self._internal_failure(exc)
        self._log_outcome(reply, started)
        return reply

    def handle_request(self, req: EnclaveRequest) -> EnclaveReply:
        """Handle one parsed request; never raises."""
        started = time.perf_counter()
        try:
            reply = self._process(req, None, frozenset())
        except _Refusal as refusal:
            reply = EnclaveReply.failure(refusal.code, refusal.message)
        except Exception as exc:  # noqa: BLE001 - the reply is the only way out of the enclave
            reply = self._internal_failure(exc)
        self._log_outcome(reply, started)
        return reply

    # -- steps -------------------------------------------------------------------------

    def _process(self, req: EnclaveRequest, order: list[str] | None, absent: frozenset[str]) -> EnclaveReply:
        request = req.request
        _validate(request, len(absent))
        info = _utf8(request.vault_id, "vault_id")
        try:
            suite = suite_from_b64(request.suite_id)
        except SuiteError as exc:
            raise _Refusal(EnclaveErrorCode.INVALID_SUITE, str(exc)) from None
        try:
            validate_request_encoding(request.encoding)
        except EncodingError as exc:
            raise _Refusal(EnclaveErrorCode.INVALID_ENCODING, str(exc)) from None
        expressions = request.expressions or {}
        operation = self._operation(request)
        engine = self._prepare_expressions(expressions) if expressions else None
        key_ciphertext = _decode_key_ciphertext(request.encrypted_private_key)
        # Last check before the key call: only an authorized request costs a KMS call.
        authorized = self._authorize(request, absent)

        recipient, private_key = self._recipient(key_ciphertext, request, req.credential, suite, authorized)
        try:
            names: Iterable[str] = order if order is not None else request.fields
            values, errors = _open_fields(recipient, request, info, names, absent)
            if operation is not None:
                # The operation answers instead of the fields: no plaintext leaves.
                finished = operation.finish(
                    OpenedFields(request, values, tuple(errors), recipient, private_key)
                )
        finally:
            # The key object is freed (and cleared by OpenSSL) as soon as fields are open.
            del recipient, private_key

        if operation is not None:
            reply = finished
        elif engine is None:
            reply = EnclaveReply(fields=values, errors=errors)
        else:
            with index_key_bound(self._index_key(request, req.credential, authorized)):
                reply = self._run_expressions(engine, values, expressions, errors)
        if authorized is not None:
            # Nothing is revealed past the expiry, however long KMS took (the API's audit
            # says "unknown" only until then).
            self._still_authorized(authorized[0])
        return reply

    def _operation(self, request: DecryptRequest) -> FieldOperation | None:
        """The operation the request names (``None``: a decrypt), checked before any KMS call."""
        if request.operation is None or request.operation == DECRYPT_OPERATION:
            if request.parameters:
                # The one exception: the index key for hmac_sha256 (refused unless well-formed).
                _check_index_parameters(request)
            return None
        operation = self._operations.get(request.operation)
        if operation is None:
            raise _Refusal(EnclaveErrorCode.INVALID_REQUEST, f"unknown operation {_quote(request.operation)}")
        if request.expressions:
            raise _Refusal(EnclaveErrorCode.INVALID_REQUEST, "expressions are for decrypts only")
        try:
            operation.check(request)
        except OperationRefused as exc:
            raise _Refusal(EnclaveErrorCode.INVALID_REQUEST, str(exc)) from None
        return operation

    def _authorize(self, request: DecryptRequest, absent: frozenset[str]) -> tuple[Grant, str] | None:
        """The verified grant and its authorizer's digest, or ``None`` without a verifier."""
        if self._authorizer is None:
            return None
        scope = RequestScope(
            vault_id=request.vault_id,
            fields=frozenset(request.fields) | absent,
            expressions=request.expressions or {},
            operation=request.operation or DECRYPT_OPERATION,
            parameters=request.parameters or {},
        )
        try:
            signed = SignedAuthorization.from_wire(request.authorization)
            grant = self._authorizer.verify(signed, scope)
        except AuthorizationError as exc:
            raise _Refusal(EnclaveErrorCode.UNAUTHORIZED, f"unauthorized ({exc.code.value}): {exc}") from None
        return grant, authorizer_digest(signed.public_key)

    def _index_key(
        self, request: DecryptRequest, credential: Credential, authorized: tuple[Grant, str] | None
    ) -> IndexKey | None:
        """The index key a decrypt carries for ``hmac_sha256``, released by KMS like a vault key."""
        parameters = request.parameters or {}
        if not parameters:
            return None
        ciphertext = base64.b64decode(parameters[PARAM_INDEX_KEY], validate=True)
        try:
            der = self._key_decryptor.decrypt_private_key(
                ciphertext=ciphertext,
                vault_id=INDEX_KEY_ID,
                region=request.region,
                credential=credential,
                authorizer=authorized[1] if authorized is not None else None,
            )
        except KeyDecryptError as exc:
            raise _Refusal(exc.code, f"failed to call KMS for the index key: {exc}") from None
        return IndexKey(der, parameters[PARAM_INDEX_DEPLOYMENT])

    def _still_authorized(self, grant: Grant) -> None:
        if self._authorizer is None:
            return
        try:
            self._authorizer.still_valid(grant)
        except AuthorizationError as exc:
            raise _Refusal(EnclaveErrorCode.UNAUTHORIZED, f"unauthorized ({exc.code.value}): {exc}") from None

    def _prepare_expressions(self, expressions: Mapping[str, str]) -> ExpressionEngine:
        # Refused before the key call (decision D3): an over-long expression is a
        # request error, not a silently dropped transform.
        for name, expression in expressions.items():
            size = len(expression.encode("utf-8", "surrogatepass"))
            if size > MAX_EXPRESSION_LENGTH:
                raise _Refusal(
                    EnclaveErrorCode.EXPRESSION_TOO_LONG,
                    f"[{_quote(name)}] expression length {size} bytes "
                    f"exceeds maximum {MAX_EXPRESSION_LENGTH}",
                )
        engine = self._engine()
        try:
            engine.validate(expressions)
        except ValueError as exc:
            raise _Refusal(EnclaveErrorCode.EXPRESSION_TOO_LONG, str(exc)) from None
        return engine

    def _engine(self) -> ExpressionEngine:
        with self._cel_lock:
            if not self._cel_resolved:
                self._cel = load_default_engine()
                self._cel_resolved = True
            engine = self._cel
        if engine is None:
            raise _Refusal(EnclaveErrorCode.INTERNAL, "expression engine unavailable")
        return engine

    def _recipient(
        self,
        key_ciphertext: bytes,
        request: DecryptRequest,
        credential: Credential,
        suite: Suite,
        authorized: tuple[Grant, str] | None,
    ) -> tuple[Recipient, bytes]:
        """The vault's key as a recipient, and as KMS released it (PKCS#8 DER)."""
        try:
            if authorized is None:
                der = self._key_decryptor.decrypt_private_key(
                    ciphertext=key_ciphertext,
                    vault_id=request.vault_id,
                    region=request.region,
                    credential=credential,
                )
            else:
                der = self._key_decryptor.decrypt_private_key(
                    ciphertext=key_ciphertext,
                    vault_id=request.vault_id,
                    region=request.region,
                    credential=credential,
                    authorizer=authorized[1],
                )
        except KeyDecryptError as exc:
            raise _Refusal(exc.code, f"failed to call KMS: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any key-path failure is a global error
            # An unexpected failure's text is not known to be safe to return or log.
            logger.error("key decryptor failed", extra={"fields": {"exception": type(exc).__name__}})
            raise _Refusal(
                EnclaveErrorCode.KEY_DECRYPT_FAILED, f"failed to call KMS: {type(exc).__name__}"
            ) from None
        try:
            return recipient_from_pkcs8(der, suite), der
        except KeyFormatError as exc:
            raise _Refusal(EnclaveErrorCode.KEY_DECRYPT_FAILED, str(exc)) from None

    def _run_expressions(
        self,
        engine: ExpressionEngine,
        values: dict[str, str | None],
        expressions: Mapping[str, str],
        errors: list[str],
    ) -> EnclaveReply:
        try:
            result = engine.evaluate(values, expressions)
            outputs = dict(result.values)
            errors.extend(result.errors)
        except Exception as exc:  # noqa: BLE001 - an engine bug must not lose the fields
            # The engine contract is "errors are values"; if it breaks anyway, the
            # decrypted fields still go back and each expression reports the failure.
            logger.error("expression engine failed", extra={"fields": {"exception": type(exc).__name__}})
            outputs = dict(values)
            for name in expressions:
                outputs[name] = None
                errors.append(f"[{_quote(name)}] Execution Error: expression engine failure")
        return EnclaveReply(fields=outputs, errors=errors)

    # -- outcome -----------------------------------------------------------------------

    @staticmethod
    def _internal_failure(exc: Exception) -> EnclaveReply:
        logger.error("request handling failed", extra={"fields": {"exception": type(exc).__name__}})
        return EnclaveReply.failure(EnclaveErrorCode.INTERNAL, "internal error")

    @staticmethod
    def _log_outcome(reply: EnclaveReply, started: float) -> None:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        if reply.is_global_failure:
            message = reply.errors[0] if reply.errors else ""
            logger.warning(
                "decrypt request refused",
                extra={
                    "fields": {
                        "code": reply.code.value if reply.code else None,
                        "error": message[:_LOG_MESSAGE_LIMIT],
                        "duration_ms": elapsed_ms,
                    }
                },
            )
            return
        logger.info(
            "decrypt request handled",
            extra={
                "fields": {
                    "field_count": len(reply.fields or {}),
                    "error_count": len(reply.errors),
                    "duration_ms": elapsed_ms,
                }
            },
        )


def _validate(request: DecryptRequest, absent_count: int) -> None:
    def refuse(message: str) -> _Refusal:
        return _Refusal(EnclaveErrorCode.INVALID_REQUEST, message)

    if not request.vault_id:
        raise refuse("vault_id cannot be empty")
    if not request.region:
        raise refuse("region cannot be empty")
    if not _REGION.fullmatch(request.region):
        raise refuse("region contains invalid characters")
    if not request.suite_id:
        raise refuse("suite_id cannot be empty")
    if not request.encrypted_private_key:
        raise refuse("encrypted_private_key cannot be empty")
    count = len(request.fields) + absent_count
    if count > MAX_ENCLAVE_FIELDS:
        raise refuse(f"field count {count} exceeds maximum {MAX_ENCLAVE_FIELDS}")


def _check_index_parameters(request: DecryptRequest) -> None:
    """A decrypt's parameters may only be the index key for ``hmac_sha256``, and only signed."""
    parameters = request.parameters or {}

    def refuse(message: str) -> _Refusal:
        return _Refusal(EnclaveErrorCode.INVALID_REQUEST, message)

    if set(parameters) != DECRYPT_INDEX_PARAMETERS:
        raise refuse("a decrypt takes no parameters but the index key")
    if not request.expressions:
        raise refuse("the index key is for expressions only")
    if request.authorization is None:
        # Unsigned, the enclave would compute tokens of any value it is sent.
        raise refuse("the index key needs an authorized request")
    if not DEPLOYMENT_ID_PATTERN.fullmatch(parameters[PARAM_INDEX_DEPLOYMENT]):
        raise refuse("index_deployment is malformed")
    try:
        base64.b64decode(parameters[PARAM_INDEX_KEY].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise refuse("index_key is not base64") from None


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only reachable through JSON escapes of lone surrogates.
        raise _Refusal(EnclaveErrorCode.INVALID_REQUEST, f"{what} is not valid Unicode") from None


def _decode_key_ciphertext(value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        detail = "non-ASCII character" if isinstance(exc, UnicodeEncodeError) else str(exc)
        raise _Refusal(
            EnclaveErrorCode.INVALID_REQUEST, f"unable to base64 decode encrypted_private_key: {detail}"
        ) from None


def _open_fields(
    recipient: Recipient,
    request: DecryptRequest,
    info: bytes,
    names: Iterable[str],
    absent: frozenset[str],
) -> tuple[dict[str, str | None], list[str]]:
    """Open every field; a field that fails is ``null`` plus one error, never a global failure.

    Fields are opened one after another: the enclave has one vCPU and the ECDH inside
    each open holds the interpreter, so a pool would only add overhead.
    """
    suite = recipient.suite
    fields = request.fields
    values: dict[str, str | None] = {}
    errors: list[str] = []
    for name in names:
        label = name.lower()
        if name in absent:
            values[name] = None
            errors.append(f"[{_quote(label)}] field not present in vault")
            continue
        try:
            enc, ct = parse_field_value(fields[name], suite)
            plaintext = recipient.open(enc, ct, info, label.encode("utf-8"))
        except (EncodingError, HpkeError) as exc:
            values[name] = None
            errors.append(f"[{_quote(label)}] unable to decrypt data: {exc}")
            continue
        except UnicodeEncodeError:
            values[name] = None
            errors.append(f"[{_quote(label)}] unable to decrypt data: field name is not valid Unicode")
            continue
        try:
            values[name] = plaintext.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The codec's message quotes a plaintext byte; the offset is enough.
            values[name] = None
            errors.append(
                f"[{_quote(label)}] unable to convert plaintext data to string: "
                f"invalid UTF-8 at byte {exc.start}"
            )
    return values, errors
