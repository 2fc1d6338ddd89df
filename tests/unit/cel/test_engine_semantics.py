"""Evaluation model (spec 6.1 with decision D3): order, scope, outputs, errors, size limit."""

from __future__ import annotations

import json

import pytest

from unit.cel.support import error_of, evaluate_one
from vault.enclave.cel import MAX_EXPRESSION_LENGTH, CelEngine, ExpressionTooLong


def test_max_expression_length_is_upstreams() -> None:
    assert MAX_EXPRESSION_LENGTH == 10240


def test_outputs_follow_request_order(engine: CelEngine) -> None:
    expressions = {"z": "1", "a": "2", "m": "3"}
    result = engine.evaluate({"f": "x"}, expressions)
    assert list(result.values) == ["f", "z", "a", "m"]


def test_an_expression_sees_earlier_outputs(engine: CelEngine) -> None:
    result = engine.evaluate(
        {"first_name": "Bob"},
        {"upper": "first_name.to_uppercase()", "greeting": "'Hello ' + upper", "size": "size(greeting)"},
    )
    assert result.values == {"first_name": "Bob", "upper": "BOB", "greeting": "Hello BOB", "size": 9}
    assert result.errors == []


def test_an_expression_does_not_see_later_outputs(engine: CelEngine) -> None:
    result = engine.evaluate({}, {"early": "late + 1", "late": "1"})
    assert result.values == {"early": None, "late": 1}
    assert result.errors == ["[early] Execution Error: Undeclared reference to 'late'"]


def test_earlier_outputs_keep_their_cel_type(engine: CelEngine) -> None:
    # The timestamp from `born` is still a timestamp for `age`, not its JSON string.
    result = engine.evaluate({"dob": "2000-02-29"}, {"born": "date(dob)", "year": "born.getFullYear()"})
    assert result.values["born"] == "2000-02-29T00:00:00+00:00"
    assert result.values["year"] == 2000


def test_an_overwritten_field_is_the_new_value_for_later_expressions(engine: CelEngine) -> None:
    result = engine.evaluate(
        {"first_name": "Bob"},
        {"first_name": "first_name.to_uppercase()", "copy": "first_name"},
    )
    assert result.values == {"first_name": "BOB", "copy": "BOB"}


def test_failed_expression_is_null_for_later_expressions(engine: CelEngine) -> None:
    result = engine.evaluate({"n": "Bob"}, {"bad": "int(n)", "check": "bad == null"})
    assert result.values["bad"] is None
    assert result.values["check"] is True
    assert result.errors == [
        "[bad] Execution Error: Error executing function 'int': invalid argument or overflow"
    ]


def test_failing_expression_that_overwrites_a_field_nulls_it(engine: CelEngine) -> None:
    result = engine.evaluate({"n": "Bob", "other": "x"}, {"n": "n.nope()"})
    assert result.values == {"n": None, "other": "x"}
    assert result.errors == ["[n] Execution Error: Undeclared reference to 'nope'"]


def test_failed_field_is_null(engine: CelEngine) -> None:
    result = engine.evaluate(
        {"ssn": None, "name": "Bob"},
        {"missing": "ssn == null", "upper": "ssn.to_uppercase()", "name_upper": "name.to_uppercase()"},
    )
    assert result.values["missing"] is True
    assert result.values["upper"] is None
    assert result.values["name_upper"] == "BOB"
    assert result.errors == [
        "[upper] Execution Error: Error executing function 'to_uppercase': "
        "expected a string argument, got null_type"
    ]


def test_errors_are_listed_in_request_order(engine: CelEngine) -> None:
    result = engine.evaluate({}, {"b": "1 +", "ok": "1", "a": "nope"})
    assert result.errors == [
        "[b] Compile Error: Syntax error at line 1, column 3: unexpected end of expression",
        "[a] Execution Error: Undeclared reference to 'nope'",
    ]
    assert result.values == {"b": None, "ok": 1, "a": None}


def test_non_identifier_output_names_still_produce_outputs(engine: CelEngine) -> None:
    result = engine.evaluate(
        {"first-name": "Bob", "first_name": "Ann"},
        {"full name": "first_name + '!'", "a.b": "'dotted'", "uses": "a.b"},
    )
    assert result.values["full name"] == "Ann!"
    assert result.values["a.b"] == "dotted"
    # `a.b` is field selection on an undeclared `a`, not the output named "a.b".
    assert result.values["uses"] is None
    assert result.errors == ["[uses] Execution Error: Undeclared reference to 'a'"]
    assert result.values["first-name"] == "Bob"


@pytest.mark.parametrize(
    "expression",
    ["1 +", "(", "'unterminated", "a b", "[1, 2", "{1: }", "1 ? 2", "@", ""],
)
def test_syntax_errors_are_compile_errors(engine: CelEngine, expression: str) -> None:
    assert error_of(engine, expression).startswith("[out] Compile Error: Syntax error")


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("[1].map(x)", "macro 'map' takes 2 arguments"),
        ("[1].filter(x, x > 0, 1)", "macro 'filter' takes 2 arguments"),
        ("[1].all(1, true)", "macro 'all' needs a variable name as its first argument"),
        ("[1].exists(x + 1, true)", "macro 'exists' needs a variable name as its first argument"),
    ],
)
def test_malformed_macros_are_compile_errors(engine: CelEngine, expression: str, detail: str) -> None:
    assert error_of(engine, expression) == f"[out] Compile Error: {detail}"


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("undefined_variable", "Undeclared reference to 'undefined_variable'"),
        ("unknown_function(1)", "Undeclared reference to 'unknown_function'"),
        ("'x'.unknown_method()", "Undeclared reference to 'unknown_method'"),
        ("1 / 0", "modulus or divide by zero"),
        ("9223372036854775807 + 1", "return error for overflow"),
        ("'a' + 1", "No such overload: _+_ applied to (string, int)"),
        ("{'a': 1}.b", "No such key: 'b'"),
        ("{'a': 1}['b']", "no such key"),
        ("[1, 2][2]", "invalid argument"),
        ("[1, 2][-1]", "invalid argument"),
        ("'abc'[0]", "No such overload: _[_] applied to (string, int)"),
        ("'abc'.size", "type 'string' does not support field selection"),
        ("{1: 1, 1: 2}", "duplicate map key"),
        ("'abc'.is_empty(1)", "Error executing function 'is_empty': no such overload"),
        ("today_utc(1)", "Error executing function 'today_utc': no such overload"),
    ],
)
def test_runtime_errors_are_execution_errors(engine: CelEngine, expression: str, detail: str) -> None:
    assert error_of(engine, expression) == f"[out] Execution Error: {detail}"


def test_error_absorbed_by_logical_or_is_not_an_error(engine: CelEngine) -> None:
    assert evaluate_one(engine, "1 / 0 == 1 || true") is True


def test_values_are_json_ready(engine: CelEngine) -> None:
    result = engine.evaluate(
        {"f": "Bob", "g": None},
        {
            "m": "{'k': [1, 2u, 2.5, true, null, b'hi', date('2000-01-01'), duration('2s')]}",
            "s": "f",
        },
    )
    assert result.errors == []
    encoded = json.dumps(result.values, allow_nan=False)
    assert json.loads(encoded) == {
        "f": "Bob",
        "g": None,
        "m": {"k": [1, 2, 2.5, True, None, "aGk=", "2000-01-01T00:00:00+00:00", 2_000_000_000]},
        "s": "Bob",
    }
    # Plain Python types, not cel-python's subclasses.
    assert type(result.values["s"]) is str
    assert all(type(item) in (int, float, bool, str, type(None)) for item in result.values["m"]["k"])


class TestExpressionLength:
    def test_at_the_limit_is_accepted(self, engine: CelEngine) -> None:
        text = "'" + "a" * (MAX_EXPRESSION_LENGTH - 2) + "'"
        assert len(text.encode()) == MAX_EXPRESSION_LENGTH
        engine.validate({"x": text})
        assert engine.evaluate({}, {"x": text}).values["x"] == "a" * (MAX_EXPRESSION_LENGTH - 2)

    def test_one_byte_over_is_refused(self, engine: CelEngine) -> None:
        text = "'" + "a" * (MAX_EXPRESSION_LENGTH - 1) + "'"
        with pytest.raises(ExpressionTooLong) as caught:
            engine.validate({"ok": "1", "long_one": text})
        assert caught.value.name == "long_one"
        assert caught.value.length == MAX_EXPRESSION_LENGTH + 1
        assert "long_one" in str(caught.value)
        assert "aaaa" not in str(caught.value)

    def test_length_is_counted_in_utf8_bytes(self, engine: CelEngine) -> None:
        # 3414 three-byte characters plus quotes: 10244 bytes but only 3416 characters.
        text = "'" + "€" * 3414 + "'"
        assert len(text) < MAX_EXPRESSION_LENGTH < len(text.encode())
        with pytest.raises(ExpressionTooLong):
            engine.validate({"euro": text})

    def test_is_a_value_error(self) -> None:
        assert issubclass(ExpressionTooLong, ValueError)

    def test_evaluate_validates_before_running_anything(self, engine: CelEngine) -> None:
        too_long = "1" * (MAX_EXPRESSION_LENGTH + 1)
        with pytest.raises(ExpressionTooLong):
            engine.evaluate({"f": "v"}, {"first": "1", "second": too_long})

    def test_lone_surrogates_are_counted_then_refused(self, engine: CelEngine) -> None:
        # JSON can carry "\ud800": it must be measured; as a literal (raw or escaped) it is
        # not Unicode text, a Compile Error as in upstream; evaluating never raises.
        text = "'\ud800'"
        engine.validate({"x": text})
        result = engine.evaluate({"f": "\ud800"}, {"x": text, "e": "'\\ud800'", "h": "f.sha256()"})
        assert result.values["x"] is None
        assert result.errors == [
            "[x] Compile Error: invalid string literal: surrogate code point",
            "[e] Compile Error: invalid string literal: surrogate code point",
            "[h] Execution Error: Error executing function 'sha256': string is not valid Unicode",
        ]
