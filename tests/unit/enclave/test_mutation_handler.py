"""The enclave handler's exact contract where mutation testing found it unasserted.

Log records (message, level, fields and the duration's arithmetic), exact refusal messages and
codes, the limits at and one past each boundary, and what the key decryptor is handed on the
authorized and index-key paths.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

import vault.enclave.handler as handler_module
from tests.support.authorization import LocalSigner
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.authorization import AuthorizationVerifier, Grant, authorizer_digest, sign
from vault.common.blind_index import INDEX_KEY_ID, PARAM_INDEX_DEPLOYMENT, PARAM_INDEX_KEY
from vault.common.messages import Credential, EnclaveErrorCode, EnclaveReply, EnclaveRequest
from vault.enclave.handler import RequestHandler
from vault.enclave.key_decryptor import KeyDecryptError

NOW = 1_800_000_000
DEPLOYMENT = "AAAAAAAAAAAAAAAAAAAAAA"
VAULT = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
LOGGER = "vault.enclave.handler"


def send(handler: RequestHandler, wire: dict[str, Any]) -> EnclaveReply:
    return handler.handle(json.dumps(wire).encode("utf-8"))


def wire_of(key: VaultKey, fields: dict[str, Any], /, **overrides: Any) -> dict[str, Any]:
    wire = key.request({}).to_wire()
    wire["request"]["fields"] = fields
    wire["request"].update(overrides)
    return wire


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.getMessage() == message]


@dataclass
class Result:
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class EchoEngine:
    """Accepts every expression; outputs the fields plus each expression's name."""

    def __init__(self, *, crash: Exception | None = None) -> None:
        self.crash = crash

    def validate(self, expressions: Mapping[str, str]) -> None:
        return None

    def evaluate(self, fields: Mapping[str, str | None], expressions: Mapping[str, str]) -> Result:
        if self.crash is not None:
            raise self.crash
        return Result({**fields, **{name: name for name in expressions}}, [])


class RecordingDecryptor:
    """The local key decryptor, recording every call's arguments."""

    def __init__(self, inner: LocalKeyDecryptor) -> None:
        self.inner = inner
        self.seen: list[dict[str, Any]] = []

    def decrypt_private_key(self, **kwargs: Any) -> bytes:
        self.seen.append(kwargs)
        return self.inner.decrypt_private_key(**kwargs)


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def decrypt_private_key(self, **kwargs: Any) -> bytes:
        raise self.exc


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """perf_counter as the handler sees it: 10.0 at the start, 10.0123456 at the end (12.346 ms)."""
    ticks = iter([10.0, 10.0123456])
    monkeypatch.setattr(handler_module, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    yield


# -- outcome logs ----------------------------------------------------------------------


def test_a_handled_request_logs_counts_and_the_exact_duration(caplog, fake_clock, decryptor, vault_key):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    fields = {"a": vault_key.seal_field("a", "x"), "b": "not base64!"}
    reply = send(RequestHandler(decryptor), wire_of(vault_key, fields))
    assert reply.fields == {"a": "x", "b": None}
    (record,) = records(caplog, "decrypt request handled")
    assert record.levelno == logging.INFO
    assert record.fields == {"field_count": 2, "error_count": 1, "duration_ms": 12.346}  # type: ignore[attr-defined]
    assert not records(caplog, "decrypt request refused")


def test_a_refusal_logs_its_code_and_the_first_200_characters(caplog, fake_clock, vault_key):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    detail = "".join(chr(ord("a") + i % 26) for i in range(300))
    handler = RequestHandler(Raising(KeyDecryptError(detail, EnclaveErrorCode.ATTESTATION_FAILED)))
    reply = send(handler, wire_of(vault_key, {}))
    assert reply.to_wire() == {"errors": [f"failed to call KMS: {detail}"], "code": "AttestationFailed"}
    (record,) = records(caplog, "decrypt request refused")
    assert record.levelno == logging.WARNING
    assert (
        record.fields
        == {  # type: ignore[attr-defined]
            "code": "AttestationFailed",
            "error": f"failed to call KMS: {detail}"[:200],
            "duration_ms": 12.346,
        }
    )
    assert not records(caplog, "decrypt request handled")


def test_an_unexpected_failure_logs_only_its_type(caplog, decryptor, vault_key, monkeypatch):
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("SECRET")

    monkeypatch.setattr(handler_module, "_open_fields", boom)
    request = EnclaveRequest.model_validate(wire_of(vault_key, {}))
    for reply in (
        RequestHandler(decryptor).handle_request(request),
        send(RequestHandler(decryptor), request.to_wire()),
    ):
        assert reply.to_wire() == {"errors": ["internal error"], "code": "InternalError"}
    logged = records(caplog, "request handling failed")
    assert [(r.levelno, r.fields) for r in logged] == [  # type: ignore[attr-defined]
        (logging.ERROR, {"exception": "ZeroDivisionError"})
    ] * 2


def test_an_unexpected_key_decryptor_failure_logs_only_its_type(caplog, vault_key):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    reply = send(RequestHandler(Raising(LookupError("SECRET"))), wire_of(vault_key, {}))
    assert reply.to_wire() == {"errors": ["failed to call KMS: LookupError"], "code": "KeyDecryptFailed"}
    (record,) = records(caplog, "key decryptor failed")
    assert (record.levelno, record.fields) == (logging.ERROR, {"exception": "LookupError"})  # type: ignore[attr-defined]


def test_an_engine_crash_logs_only_its_type(caplog, decryptor, vault_key):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    handler = RequestHandler(decryptor, EchoEngine(crash=KeyError("SECRET")))
    fields = {"a": vault_key.seal_field("a", "x")}
    reply = send(handler, wire_of(vault_key, fields, expressions={"e": "a"}))
    assert reply.fields == {"a": "x", "e": None}
    assert reply.errors == ["[e] Execution Error: expression engine failure"]
    (record,) = records(caplog, "expression engine failed")
    assert (record.levelno, record.fields) == (logging.ERROR, {"exception": "KeyError"})  # type: ignore[attr-defined]


# -- names, limits and messages ---------------------------------------------------------


def test_names_are_quoted_whole_up_to_64_characters(decryptor, vault_key):
    at, past = "a" * 64, "b" * 65
    reply = send(RequestHandler(decryptor), wire_of(vault_key, {at: None, past: None}))
    assert reply.errors == [
        f"[{at}] field not present in vault",
        f"[{'b' * 64}...] field not present in vault",
    ]


def test_absent_fields_count_towards_the_field_limit(decryptor, vault_key):
    fields: dict[str, Any] = {f"f{i}": "AAAA" for i in range(1000)}
    fields["gone"] = None
    reply = send(RequestHandler(decryptor), wire_of(vault_key, fields))
    assert reply.to_wire() == {"errors": ["field count 1001 exceeds maximum 1000"], "code": "InvalidRequest"}
    assert decryptor.calls == 0


def test_three_validation_problems_are_listed_without_a_remainder(decryptor, vault_key):
    wire = wire_of(vault_key, {"a": 1, "b": 2, "c": 3})
    reply = send(RequestHandler(decryptor), wire)
    assert reply.errors == [
        "invalid request: request.fields.a: Input should be a valid string; "
        "request.fields.b: Input should be a valid string; request.fields.c: Input should be a valid string"
    ]


def test_more_than_three_validation_problems_end_with_the_remainder(decryptor, vault_key):
    wire = wire_of(vault_key, {name: 0 for name in "abcde"})
    reply = send(RequestHandler(decryptor), wire)
    assert reply.errors[0].endswith("request.fields.c: Input should be a valid string; and 2 more")


@pytest.mark.parametrize(("raw", "kind"), [(b"[" * 100000, "RecursionError"), (b"1" * 5000, "ValueError")])
def test_unparseable_documents_name_the_error_type(decryptor, raw, kind):
    reply = RequestHandler(decryptor).handle(raw)
    assert reply.to_wire() == {"errors": [f"failed to parse request: {kind}"], "code": "InvalidRequest"}


def test_a_lone_surrogate_vault_id_is_an_invalid_request(decryptor, vault_key):
    reply = send(RequestHandler(decryptor), wire_of(vault_key, {}, vault_id="v_\ud800"))
    assert reply.to_wire() == {"errors": ["vault_id is not valid Unicode"], "code": "InvalidRequest"}


def test_an_expression_of_exactly_the_limit_is_accepted(decryptor, vault_key):
    handler = RequestHandler(decryptor, EchoEngine())
    at = send(handler, wire_of(vault_key, {}, expressions={"e": "x" * 10240}))
    assert at.to_wire() == {"fields": {"e": "e"}, "errors": []}
    past = send(handler, wire_of(vault_key, {}, expressions={"e": "x" * 10241}))
    assert past.to_wire() == {
        "errors": ["[e] expression length 10241 bytes exceeds maximum 10240"],
        "code": "ExpressionTooLong",
    }


def test_the_default_engine_is_loaded_once(decryptor, vault_key, monkeypatch):
    loads: list[int] = []

    def load() -> EchoEngine:
        loads.append(1)
        return EchoEngine()

    monkeypatch.setattr(handler_module, "load_default_engine", load)
    handler = RequestHandler(decryptor)
    for _ in range(3):
        assert send(handler, wire_of(vault_key, {}, expressions={"e": "1"})).fields == {"e": "e"}
    assert loads == [1]


def test_expressions_with_an_operation_are_refused(decryptor, vault_key):
    reply = send(RequestHandler(decryptor), wire_of(vault_key, {}, operation="index", expressions={"e": "1"}))
    assert reply.to_wire() == {"errors": ["expressions are for decrypts only"], "code": "InvalidRequest"}


def test_the_operations_given_replace_the_defaults(decryptor, vault_key):
    reply = send(RequestHandler(decryptor, operations={}), wire_of(vault_key, {}, operation="index"))
    assert reply.to_wire() == {"errors": ["unknown operation index"], "code": "InvalidRequest"}


@pytest.mark.parametrize("value", ["AAAA!!!!", "AA AA", "A"])
def test_a_key_ciphertext_that_is_not_strict_base64_is_refused(decryptor, vault_key, value):
    try:
        base64.b64decode(value.encode("ascii"), validate=True)
    except binascii.Error as exc:
        expected = str(exc)
    reply = send(RequestHandler(decryptor), wire_of(vault_key, {}, encrypted_private_key=value))
    assert reply.to_wire() == {
        "errors": [f"unable to base64 decode encrypted_private_key: {expected}"],
        "code": "InvalidRequest",
    }
    assert decryptor.calls == 0


def test_a_non_ascii_key_ciphertext_is_refused(decryptor, vault_key):
    reply = send(RequestHandler(decryptor), wire_of(vault_key, {}, encrypted_private_key="AAAé"))
    assert reply.to_wire() == {
        "errors": ["unable to base64 decode encrypted_private_key: non-ASCII character"],
        "code": "InvalidRequest",
    }


def test_a_field_name_that_is_not_unicode_fails_alone(decryptor, vault_key):
    sealed = vault_key.seal_field("ok", "fine")
    # The name cannot be sealed for (it has no UTF-8 form): any well-formed value reaches the open.
    fields = {"x\ud800": vault_key.seal_field("x", "v"), "ok": sealed}
    reply = send(RequestHandler(decryptor), wire_of(vault_key, fields))
    assert reply.fields == {"x\ud800": None, "ok": "fine"}
    assert reply.errors == ["[x\ud800] unable to decrypt data: field name is not valid Unicode"]


# -- the authorized path and the index key -----------------------------------------------


API = LocalSigner()
CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": "AKID-1", "SecretAccessKey": "SAK-1", "Token": "TOK-1"}
)


def _authorized(
    vault: VaultKey, index: VaultKey | None, *, parameters: dict[str, str] | None = None, expressions=None
) -> dict[str, Any]:
    fields = {"a": vault.seal_field("a", "x")}
    expressions = {"e": "a"} if expressions is None else expressions
    if parameters is None:
        parameters = (
            {}
            if index is None
            else {
                PARAM_INDEX_KEY: base64.b64encode(index.encrypted_private_key).decode(),
                PARAM_INDEX_DEPLOYMENT: DEPLOYMENT,
            }
        )
    grant = Grant.for_request(
        vault_id=vault.vault_id,
        fields=list(fields),
        expressions=expressions,
        request_id="req-1",
        issued_at=NOW,
        parameters=parameters,
    )
    request = vault.request(
        fields, region="eu-west-3", credential=CREDENTIAL, authorization=sign(grant, API).to_wire()
    )
    wire = request.to_wire()
    wire["request"].update({"expressions": expressions, "parameters": parameters})
    return wire


@pytest.fixture
def digest() -> str:
    return authorizer_digest(API.public_key)


@pytest.fixture
def recording(decryptor) -> RecordingDecryptor:
    return RecordingDecryptor(decryptor)


@pytest.fixture
def authorized_handler(recording) -> RequestHandler:
    return RequestHandler(recording, EchoEngine(), authorizer=AuthorizationVerifier(clock=lambda: float(NOW)))


def test_the_authorized_key_call_carries_the_request_context(
    decryptor, recording, authorized_handler, digest
):
    vault = decryptor.create_vault_key(VAULT, authorizer=digest)
    reply = send(authorized_handler, _authorized(vault, None))
    assert reply.to_wire() == {"fields": {"a": "x", "e": "e"}, "errors": []}
    assert recording.seen == [
        {
            "ciphertext": vault.encrypted_private_key,
            "vault_id": VAULT,
            "region": "eu-west-3",
            "credential": CREDENTIAL,
            "authorizer": digest,
        }
    ]


def test_the_index_key_is_released_with_the_request_context(decryptor, recording, authorized_handler, digest):
    vault = decryptor.create_vault_key(VAULT, authorizer=digest)
    index = decryptor.create_vault_key(INDEX_KEY_ID, authorizer=digest)
    reply = send(authorized_handler, _authorized(vault, index))
    assert reply.to_wire() == {"fields": {"a": "x", "e": "e"}, "errors": []}
    assert recording.seen[1] == {
        "ciphertext": index.encrypted_private_key,
        "vault_id": INDEX_KEY_ID,
        "region": "eu-west-3",
        "credential": CREDENTIAL,
        "authorizer": digest,
    }


def test_an_index_key_refused_by_kms_keeps_its_code(decryptor, recording, authorized_handler, digest):
    vault = decryptor.create_vault_key(VAULT, authorizer=digest)
    # Bound to another id than the index key's: the key call refuses it.
    index = decryptor.create_vault_key("v_other", authorizer=digest)
    reply = send(authorized_handler, _authorized(vault, index))
    assert reply.code is not None and reply.fields is None
    assert reply.errors[0].startswith("failed to call KMS for the index key: ")
    assert recording.seen[1]["vault_id"] == INDEX_KEY_ID
    with pytest.raises(KeyDecryptError) as refused:
        decryptor.decrypt_private_key(**recording.seen[1])
    assert reply.to_wire() == {
        "errors": [f"failed to call KMS for the index key: {refused.value}"],
        "code": refused.value.code.value,
    }


@pytest.mark.parametrize(
    ("parameters", "expressions", "message"),
    [
        ({PARAM_INDEX_KEY: "AAAA"}, None, "a decrypt takes no parameters but the index key"),
        (
            {PARAM_INDEX_KEY: "AAAA", PARAM_INDEX_DEPLOYMENT: DEPLOYMENT},
            {},
            "the index key is for expressions only",
        ),
        ({PARAM_INDEX_KEY: "AAAA", PARAM_INDEX_DEPLOYMENT: "short"}, None, "index_deployment is malformed"),
        ({PARAM_INDEX_KEY: "AAAA!!!!", PARAM_INDEX_DEPLOYMENT: DEPLOYMENT}, None, "index_key is not base64"),
        ({PARAM_INDEX_KEY: "AAé=", PARAM_INDEX_DEPLOYMENT: DEPLOYMENT}, None, "index_key is not base64"),
    ],
)
def test_malformed_index_parameters_are_refused_before_the_key_call(
    decryptor, recording, authorized_handler, digest, parameters, expressions, message
):
    vault = decryptor.create_vault_key(VAULT, authorizer=digest)
    reply = send(authorized_handler, _authorized(vault, None, parameters=parameters, expressions=expressions))
    assert reply.to_wire() == {"errors": [message], "code": "InvalidRequest"}
    assert recording.seen == []


def test_an_unsigned_index_key_is_refused(decryptor, vault_key):
    parameters = {PARAM_INDEX_KEY: "AAAA", PARAM_INDEX_DEPLOYMENT: DEPLOYMENT}
    reply = send(
        RequestHandler(decryptor, EchoEngine()),
        wire_of(vault_key, {}, expressions={"e": "1"}, parameters=parameters),
    )
    assert reply.to_wire() == {
        "errors": ["the index key needs an authorized request"],
        "code": "InvalidRequest",
    }
    assert decryptor.calls == 0


class BareFailure:
    """An operation answering a global failure that carries neither a message nor a code."""

    def check(self, request: Any) -> None:
        return None

    def finish(self, opened: Any) -> EnclaveReply:
        return EnclaveReply(fields=None, errors=[], code=None)


def test_a_bare_global_failure_is_logged_without_code_or_message(caplog, fake_clock, decryptor, vault_key):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    handler = RequestHandler(decryptor, operations={"bare": BareFailure()})
    reply = send(handler, wire_of(vault_key, {}, operation="bare"))
    assert reply.to_wire() == {"errors": []}
    (record,) = records(caplog, "decrypt request refused")
    assert record.fields == {"code": None, "error": "", "duration_ms": 12.346}  # type: ignore[attr-defined]


def test_without_a_verifier_the_index_key_is_asked_for_without_an_authorizer(decryptor, vault_key):
    # An enclave run without the API's verifier (no D16): the authorization is carried, not read.
    recording = RecordingDecryptor(decryptor)
    index = decryptor.create_vault_key(INDEX_KEY_ID)
    wire = _authorized(vault_key, index)
    reply = send(RequestHandler(recording, EchoEngine()), wire)
    assert reply.to_wire() == {"fields": {"a": "x", "e": "e"}, "errors": []}
    assert [(call["vault_id"], call.get("authorizer", "not passed")) for call in recording.seen] == [
        (vault_key.vault_id, "not passed"),
        (INDEX_KEY_ID, None),
    ]
