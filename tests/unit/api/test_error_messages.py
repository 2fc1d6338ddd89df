"""Every validation error carries a readable message; no message or location repeats a value.

The cases below produce each rule the request models and Powertools can report, on each
route. Values are sentinels that cannot occur in a message, so finding one in the
answer means the input was echoed.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unit.api.events import ApiResponse
from unit.api.harness import ApiHarness, api_harness
from vault.api.models import SCHEMA_FIELDS
from vault.api.observability import silence_empty_metrics_warning
from vault.api.validation import DELETE_BODY, HIDDEN_NAME, describe

KNOWN = "known: " + ", ".join(SCHEMA_FIELDS)
SECRET = "Zq7SecretValue"
LONG_NAME = "Q7x" * 30  # identifier-like, but longer than a message may quote
ODD_NAME = "John Smith@example"


@dataclass(frozen=True)
class Case:
    route: str
    raw: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    #: Substrings of the request that must not come back.
    secrets: tuple[str, ...] = (SECRET,)


def _body(value: Any) -> str:
    return json.dumps(value)


CASES: dict[str, Case] = {
    "missing body": Case("create", None, secrets=()),
    "null body": Case("update", "null", secrets=()),
    "array body": Case("create", _body([SECRET])),
    "string body": Case("delete", _body(SECRET)),
    "invalid json": Case("decrypt", '{"fields": ["' + SECRET + '"] "reason": "r"}'),
    "trailing comma": Case("decrypt", '{"fields": ["' + SECRET + '"], }'),
    "invalid json, several lines": Case("create", '{\n  "first_name": "' + SECRET + '"\n  "x": 1}'),
    "control character": Case("create", '{"first_name": "' + SECRET + '\x01"}'),
    "bad escape": Case("create", '{"first_name": "' + SECRET + '\\q"}'),
    "extra data": Case("create", '{"first_name": "' + SECRET + '"} ' + SECRET),
    "too deep": Case("create", '{"first_name": ' + "[" * 40 + '"' + SECRET + '"' + "]" * 40 + "}"),
    "integer too long": Case("create", '{"first_name": ' + "7" * 150 + "}", secrets=("7" * 20,)),
    "null field": Case("create", _body({"first_name": None, "city": SECRET * 80})),
    "not a string": Case(
        "update", _body({"dob": 987654321123, "email": [SECRET]}), secrets=(SECRET, "987654321")
    ),
    "patterns": Case(
        "create",
        _body(
            {
                "phone_number": SECRET,
                "ssn9": SECRET[:9],
                "ssn4": "12345",
                "dob": "19" + SECRET[:8],
                "postal_code": SECRET + "!",
                "country": "U5",
            }
        ),
        secrets=(SECRET[:9], "12345", "U5", SECRET[:8]),
    ),
    "unknown keys": Case(
        "create",
        _body({"middle": SECRET, ODD_NAME: SECRET, LONG_NAME: SECRET}),
        secrets=(SECRET, ODD_NAME, "Q7xQ7x"),
    ),
    "delete types": Case("delete", _body({"delete_all": SECRET, "fields": SECRET})),
    "delete unknown names": Case(
        "delete",
        _body({"fields": ["first_name", " Middle ", ODD_NAME, 5], ODD_NAME: True}),
        secrets=(ODD_NAME,),
    ),
    "delete too many": Case("delete", _body({"fields": ["email"] * 101})),
    "delete nothing": Case("delete", _body({"delete_all": False, "fields": []})),
    "decrypt missing": Case("decrypt", _body({"expressions": {"age": SECRET}})),
    "decrypt types": Case("decrypt", _body({"fields": {SECRET: 1}, "reason": 5, "expressions": [SECRET]})),
    "decrypt limits": Case(
        "decrypt",
        _body(
            {
                "fields": ["nickname"],
                "reason": SECRET * 80,
                "expressions": {"": SECRET, "x": 5, "y": SECRET * 800, LONG_NAME * 12: SECRET},
            }
        ),
        secrets=(SECRET, "Q7xQ7x"),
    ),
    "query too long": Case("get", query={"fields": SECRET * 80}),
    "bad vault id": Case("bad id", secrets=("bad-" + SECRET,)),
    "audit limit not a number": Case("audit", query={"limit": SECRET}),
    "audit limit too small": Case("audit", query={"limit": "0"}, secrets=()),
    "audit limit too large": Case("audit", query={"limit": "4711"}, secrets=("4711",)),
    "audit token too long": Case("audit", query={"next_token": SECRET * 8}),
}

#: Every rule the cases above produce; each has its own message (none is the fallback).
RULES = {
    "missing",
    "model_attributes_type",
    "json_invalid",
    "json_too_deep",
    "json_number_too_long",
    "null_not_allowed",
    "string_type",
    "string_too_long",
    "string_too_short",
    "string_pattern_mismatch",
    "extra_forbidden",
    "bool_type",
    "list_type",
    "dict_type",
    "vault_field",
    "too_long",
    "nothing_to_delete",
    "expression_too_long",
    "int_parsing",
    "greater_than_equal",
    "less_than_equal",
}


def _request(api: ApiHarness, vault_id: str, case: Case) -> ApiResponse:
    method, path = {
        "create": ("POST", "/vaults"),
        "update": ("PATCH", f"/vaults/{vault_id}"),
        "delete": ("DELETE", f"/vaults/{vault_id}"),
        "decrypt": ("POST", f"/vaults/{vault_id}/decrypt"),
        "get": ("GET", f"/vaults/{vault_id}"),
        "audit": ("GET", f"/vaults/{vault_id}/audit"),
        "bad id": ("GET", f"/vaults/bad-{SECRET}"),
    }[case.route]
    return api.call(method, path, raw_body=case.raw, query=case.query or None)


@dataclass(frozen=True)
class Answers:
    responses: dict[str, ApiResponse]
    table_before: list[dict[str, Any]]
    table_after: list[dict[str, Any]]


@pytest.fixture(scope="module")
def answers() -> Answers:
    # One harness for all cases: refused requests must leave it as it was. The conftest's
    # warning filter is function-scoped, so this module-scoped fixture sets its own.
    with (
        warnings.catch_warnings(),
        pytest.MonkeyPatch.context() as monkeypatch,
        api_harness(monkeypatch) as api,
    ):
        silence_empty_metrics_warning()
        vault_id = api.create({"first_name": "Ann"})
        before = api.items()
        responses = {name: _request(api, vault_id, case) for name, case in CASES.items()}
        return Answers(responses, before, api.items())


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_error_has_a_message_and_no_value(answers: Answers, name: str) -> None:
    response = answers.responses[name]
    assert response.status == 422, response.text
    body = response.json
    assert (body["code"], body["message"]) == ("ValidationError", "Invalid request data")
    assert body["errors"]
    for error in body["errors"]:
        assert set(error) == {"loc", "type", "msg"}, error
        assert isinstance(error["msg"], str) and error["msg"].strip()
        assert "is not valid (" not in error["msg"], error
    for secret in CASES[name].secrets:
        assert secret not in response.text, (secret, response.text)
    assert "input" not in response.text and "ctx" not in response.text


def test_the_cases_cover_every_rule(answers: Answers) -> None:
    seen = {error["type"] for response in answers.responses.values() for error in response.json["errors"]}
    assert seen == RULES


def _messages(answers: Answers, name: str) -> dict[tuple[Any, ...], str]:
    response = answers.responses[name]
    return {tuple(error["loc"]): error["msg"] for error in response.json["errors"]}


def test_messages_read_as_documented(answers: Answers) -> None:
    assert _messages(answers, "missing body") == {("body",): "body: a JSON object is required"}
    assert _messages(answers, "array body") == {("body",): "body: must be a JSON object"}
    assert _messages(answers, "invalid json") == {
        ("body", 30): "body: invalid JSON at character 30: expected ','"
    }
    assert _messages(answers, "invalid json, several lines") == {
        ("body", 37): "body: invalid JSON at character 37 (line 3, column 3): expected ','"
    }
    assert _messages(answers, "control character") == {
        ("body", 30): "body: invalid JSON at character 30: control character inside a string"
    }
    assert _messages(answers, "bad escape") == {
        ("body", 30): "body: invalid JSON at character 30: invalid escape"
    }
    assert _messages(answers, "extra data") == {
        ("body", 33): "body: invalid JSON at character 33: more data after the JSON value"
    }
    assert _messages(answers, "patterns") == {
        (
            "body",
            "phone_number",
        ): "phone_number: must be an E.164 phone number: '+' and 2 to 15 digits, the first not 0",
        ("body", "ssn9"): "ssn9: must be exactly 9 digits",
        ("body", "ssn4"): "ssn4: must be exactly 4 digits",  # too long, the same mistake
        ("body", "dob"): "dob: must be a date as YYYY-MM-DD",
        ("body", "postal_code"): "postal_code: must be letters, digits, spaces and '-' only",
        ("body", "country"): "country: must be a two-letter country code",
    }
    assert _messages(answers, "unknown keys") == {
        ("body", "middle"): f"body: 'middle' is not a vault field; {KNOWN}",
        ("body", HIDDEN_NAME): f"body: a key that is not a vault field was sent; {KNOWN}",
    }
    assert _messages(answers, "delete unknown names") == {
        ("body", "fields", 1): f"fields[1]: 'middle' is not a vault field; {KNOWN}",
        ("body", "fields", 2): f"fields[2]: not a vault field; {KNOWN}",
        ("body", "fields", 3): "fields[3]: must be a string",
        ("body", HIDDEN_NAME): "body: a key that is not accepted here was sent; accepted: delete_all, fields",
    }
    assert _messages(answers, "delete too many") == {("body", "fields"): "fields: must be at most 100 items"}
    assert _messages(answers, "decrypt missing") == {
        ("body", "fields"): "fields: is required",
        ("body", "reason"): "reason: is required",
    }
    assert _messages(answers, "decrypt limits") == {
        ("body", "fields", 0): f"fields[0]: 'nickname' is not a vault field; {KNOWN}",
        ("body", "reason"): "reason: must be at most 1024 characters",
        ("body", "expressions", "", "[key]"): "expressions key: must be at least 1 character",
        ("body", "expressions", "x"): "expressions.x: must be a string",
        ("body", "expressions", "y"): "expressions.y: must be at most 10240 bytes (UTF-8)",
        ("body", "expressions", HIDDEN_NAME, "[key]"): "expressions key: must be at most 1024 characters",
    }
    assert _messages(answers, "audit limit not a number") == {
        ("query", "limit"): "query parameter limit: must be an integer"
    }
    assert _messages(answers, "audit limit too small") == {
        ("query", "limit"): "query parameter limit: must be at least 1"
    }
    assert _messages(answers, "audit limit too large") == {
        ("query", "limit"): "query parameter limit: must be at most 100"
    }


def test_refused_requests_change_nothing(answers: Answers) -> None:
    assert answers.table_after == answers.table_before


def test_json_reasons_are_fixed_texts_never_the_parser_s() -> None:
    # The pure-Python parser quotes the offending character in its reason.
    error = {"type": "json_invalid", "loc": ("body", 3), "ctx": {"error": "Invalid control character 'Z' at"}}
    assert describe(error).msg == "body: invalid JSON at character 3: control character inside a string"
    error = {"type": "json_invalid", "loc": ("body", 3), "ctx": {"error": "Invalid \\escape: 'Zq'"}}
    assert describe(error).msg == "body: invalid JSON at character 3: invalid escape"
    unknown = {"type": "json_invalid", "loc": ("body", 3), "ctx": {"error": f"surprise {SECRET}"}}
    assert describe(unknown).msg == "body: invalid JSON at character 3"


def test_an_unknown_rule_gets_a_generic_message_without_input() -> None:
    error = {"type": "value_error", "loc": ("body", "city"), "msg": f"bad {SECRET}", "input": SECRET}
    problem = describe(error, DELETE_BODY)
    assert problem.as_dict() == {
        "loc": ["body", "city"],
        "type": "value_error",
        "msg": "city: is not valid (value_error)",
    }


def test_the_log_keeps_location_and_rule_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with api_harness(monkeypatch) as api, caplog.at_level(logging.DEBUG):
        response = api.call("POST", "/vaults", raw_body=_body({"middle": SECRET, "ssn9": "x" + SECRET}))
    assert response.status == 422
    (record,) = [r for r in caplog.records if r.getMessage() == "Request validation failed"]
    assert record.validation_errors == [  # type: ignore[attr-defined]
        {"loc": ["body", "ssn9"], "type": "string_too_long"},
        {"loc": ["body", "middle"], "type": "extra_forbidden"},
    ]
    assert SECRET not in caplog.text


_PATTERN_FIELDS = ("phone_number", "ssn9", "ssn4", "dob", "country")


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(_PATTERN_FIELDS),
    value=st.text(st.characters(whitelist_categories=("L", "N", "P", "S")), min_size=10, max_size=40).filter(
        lambda text: any(char.isalpha() for char in text) and any(char.isdigit() for char in text)
    ),
    route=st.sampled_from(["POST", "PATCH"]),
)
def test_a_refused_value_never_comes_back(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, route: str
) -> None:
    # A letter and a digit break each of these formats; with 10 characters and no
    # whitespace the value cannot be a piece of a message either.
    with api_harness(monkeypatch) as api:
        vault_id = api.create({})
        path = "/vaults" if route == "POST" else f"/vaults/{vault_id}"
        response = api.call(route, path, raw_body=_body({name: value}))
    assert response.status == 422, response.text
    for error in response.json["errors"]:
        assert error["msg"]
        assert value not in error["msg"] and value not in json.dumps(error["loc"])
    assert value not in response.text and json.dumps(value)[1:-1] not in response.text
