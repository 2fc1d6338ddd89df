"""The request body parser's limits (vault.api.body): depth and integer length, counted safely."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from vault.api.body import MAX_JSON_DEPTH, MAX_JSON_INT_DIGITS, nesting_depth, parse_json_body


def _rule(text: str) -> str:
    with pytest.raises(RequestValidationError) as excinfo:
        parse_json_body(text)
    ((error,),) = [excinfo.value.errors()]
    assert error["loc"] == ("body",)
    assert error["input"] == {}, "the refusal never carries the input"
    return str(error["type"])


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}], "c": {}}', 4),
        ('{"a": "[[[{{{"}', 1),
        (r'{"a": "x\"[[[[", "b": [[1]]}', 3),
        (r'["\\", [["\\\""]]]', 3),
        ('"[[[', 0),  # an unterminated string runs to the end
        ("]]][[", 0),
    ],
)
def test_nesting_depth(text: str, depth: int) -> None:
    assert nesting_depth(text) == depth


def test_the_depth_limit_is_inclusive() -> None:
    inside = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert nesting_depth(json.dumps(parse_json_body(inside))) == MAX_JSON_DEPTH
    assert _rule("[" + inside + "]") == "json_too_deep"
    assert _rule('{"a": ' * 10_000 + "1" + "}" * 10_000) == "json_too_deep"


@pytest.mark.parametrize("sign", ["", "-"])
def test_the_integer_limit_is_inclusive(sign: str) -> None:
    assert parse_json_body(f"[{sign}{'9' * MAX_JSON_INT_DIGITS}]") == [int(sign + "9" * MAX_JSON_INT_DIGITS)]
    assert _rule(f"[{sign}{'9' * (MAX_JSON_INT_DIGITS + 1)}]") == "json_number_too_long"


@pytest.mark.parametrize(
    "value",
    [{"fields": ["first_name"], "reason": "r" * 1000}, {"a": 1.5e300, "b": ["x"] * 100}, None, "[", 12],
)
def test_ordinary_bodies_parse_as_json_loads_does(value: Any) -> None:
    text = json.dumps(value)
    assert parse_json_body(text) == json.loads(text)


def test_malformed_json_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_json_body('{"a": ')


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        '"' + '\\"' * 1_000_000 + "\\",  # one unterminated string of escaped quotes
        '"\\' * 1_000_000,
        "[]" * 1_000_000,
        '"a"' * 1_000_000,
    ],
)
def test_the_scan_is_linear_on_quote_heavy_bodies(text: str) -> None:
    # A backtracking string pattern would take hours on these; the scan takes milliseconds.
    assert nesting_depth(text) <= 1
