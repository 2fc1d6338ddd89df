"""The CEL step of request handling (spec 6.1 with decision D3).

The first half pins the handler's side of the engine contract with a recording engine;
the second half runs the project's CEL engine (``vault.enclave.cel``) end to end.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

import vault.enclave.handler as handler_module
from vault.common.messages import EnclaveErrorCode
from vault.enclave.cel import CelEngine, ExpressionTooLong
from vault.enclave.handler import RequestHandler


@dataclass
class Result:
    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class RecordingEngine:
    """Echoes fields, sets each expression's output to its text upper-cased."""

    def __init__(self, *, fail_validate: bool = False, crash: bool = False) -> None:
        self.fail_validate = fail_validate
        self.crash = crash
        self.calls: list[tuple[str, Any]] = []

    def validate(self, expressions: Mapping[str, str]) -> None:
        self.calls.append(("validate", dict(expressions)))
        if self.fail_validate:
            raise ExpressionTooLong("big", 99999)

    def evaluate(self, fields: Mapping[str, str | None], expressions: Mapping[str, str]) -> Result:
        self.calls.append(("evaluate", (dict(fields), dict(expressions))))
        if self.crash:
            raise RuntimeError("SECRET engine state")
        values: dict[str, Any] = dict(fields)
        values.update({name: text.upper() for name, text in expressions.items()})
        return Result(values, [f"[{name}] note" for name in expressions])


def _send(handler: RequestHandler, request) -> Any:
    return handler.handle(json.dumps(request.to_wire()).encode())


def test_engine_gets_decrypted_fields_in_order_and_failed_fields_as_null(decryptor, vault_key):
    engine = RecordingEngine()
    fields = {"b": vault_key.seal_field("b", "two"), "a": "AAAA"}
    reply = _send(RequestHandler(decryptor, engine), vault_key.request(fields, expressions={"x": "b + 'x'"}))
    assert engine.calls[0] == ("validate", {"x": "b + 'x'"})
    assert engine.calls[1] == ("evaluate", ({"b": "two", "a": None}, {"x": "b + 'x'"}))
    assert reply.fields == {"b": "two", "a": None, "x": "B + 'X'"}
    # Field errors first, then expression errors.
    assert reply.errors[0].startswith("[a] unable to decrypt data")
    assert reply.errors[1:] == ["[x] note"]


@pytest.mark.parametrize("expressions", [None, {}])
def test_no_expressions_means_no_engine_call(decryptor, vault_key, expressions):
    engine = RecordingEngine()
    fields = {"b": vault_key.seal_field("b", "two")}
    reply = _send(RequestHandler(decryptor, engine), vault_key.request(fields, expressions=expressions))
    assert reply.to_wire() == {"fields": {"b": "two"}, "errors": []}
    assert engine.calls == []


def test_engine_refusal_is_a_global_error_before_the_key_call(decryptor, vault_key):
    engine = RecordingEngine(fail_validate=True)
    reply = _send(RequestHandler(decryptor, engine), vault_key.request({}, expressions={"big": "1"}))
    assert reply.to_wire() == {
        "errors": ["[big] expression length 99999 bytes exceeds maximum 10240"],
        "code": EnclaveErrorCode.EXPRESSION_TOO_LONG.value,
    }
    assert decryptor.calls == 0


def test_engine_crash_keeps_fields_and_reports_each_expression(decryptor, vault_key):
    engine = RecordingEngine(crash=True)
    fields = {"b": vault_key.seal_field("b", "two")}
    reply = _send(
        RequestHandler(decryptor, engine), vault_key.request(fields, expressions={"x": "1", "y": "2"})
    )
    assert reply.fields == {"b": "two", "x": None, "y": None}
    assert reply.errors == [
        "[x] Execution Error: expression engine failure",
        "[y] Execution Error: expression engine failure",
    ]
    assert "SECRET" not in json.dumps(reply.to_wire())


def test_missing_engine_is_refused_before_the_key_call(decryptor, vault_key, monkeypatch):
    monkeypatch.setattr(handler_module, "load_default_engine", lambda: None)
    reply = _send(RequestHandler(decryptor), vault_key.request({}, expressions={"x": "1"}))
    assert reply.to_wire() == {"errors": ["expression engine unavailable"], "code": "InternalError"}
    assert decryptor.calls == 0


def test_default_engine_is_the_project_cel_engine():
    assert isinstance(handler_module.load_default_engine(), CelEngine)


# -- with the project's CEL engine ------------------------------------------------------


@pytest.fixture
def cel_handler(decryptor) -> RequestHandler:
    return RequestHandler(decryptor, CelEngine())


def _expected_age(born: datetime.date) -> int:
    today = datetime.datetime.now(datetime.UTC).date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def test_cel_over_decrypted_fields(cel_handler, vault_key):
    values = {"first_name": "Bob", "dob": "1979-04-05", "ssn9": "123456789", "ssn4": "6789"}
    fields = {name: vault_key.seal_field(name, value) for name, value in values.items()}
    expressions = {
        "first_name": "first_name.to_uppercase()",
        "age": "date(dob).age()",
        "masked_ssn": "'***-**-' + ssn4",
        "ssn_hash": "sha256(ssn9)",
        "born": "date(dob)",
    }
    reply = _send(cel_handler, vault_key.request(fields, expressions=expressions))
    assert reply.errors == []
    assert reply.fields == {
        "first_name": "BOB",
        "dob": "1979-04-05",
        "ssn9": "123456789",
        "ssn4": "6789",
        "age": _expected_age(datetime.date(1979, 4, 5)),
        "masked_ssn": "***-**-6789",
        "ssn_hash": hashlib.sha256(b"123456789").hexdigest(),
        "born": "1979-04-05T00:00:00+00:00",
    }


def test_cel_expressions_run_in_request_order(cel_handler, vault_key):
    fields = {"first_name": vault_key.seal_field("first_name", "bob")}
    expressions = {"upper": "first_name.to_uppercase()", "shout": "upper + '!'"}
    reply = _send(cel_handler, vault_key.request(fields, expressions=expressions))
    assert reply.fields == {"first_name": "bob", "upper": "BOB", "shout": "BOB!"}


def test_cel_failing_expression_is_null_with_an_error(cel_handler, vault_key):
    fields = {"dob": vault_key.seal_field("dob", "not-a-date"), "a": vault_key.seal_field("a", "A")}
    expressions = {"age": "date(dob).age()", "nope": "undefined_variable.method()", "ok": "a.to_lowercase()"}
    reply = _send(cel_handler, vault_key.request(fields, expressions=expressions))
    assert reply.fields == {"dob": "not-a-date", "a": "A", "age": None, "nope": None, "ok": "a"}
    assert [e.split("]")[0] + "]" for e in reply.errors] == ["[age]", "[nope]"]
    assert all("Error: " in e for e in reply.errors)
    # Errors describe the failure without repeating the decrypted value.
    assert "not-a-date" not in " ".join(reply.errors)


def test_cel_sees_failed_fields_as_null(cel_handler, vault_key):
    reply = _send(cel_handler, vault_key.request({"gone": "AAAA"}, expressions={"missing": "gone == null"}))
    assert reply.fields == {"gone": None, "missing": True}


def test_cel_too_long_expression_is_refused(cel_handler, decryptor, vault_key):
    reply = _send(cel_handler, vault_key.request({}, expressions={"e": "1 + " * 2600 + "1"}))
    assert reply.code is EnclaveErrorCode.EXPRESSION_TOO_LONG
    assert decryptor.calls == 0
