"""Whatever the expression text, evaluate() answers with values and error entries."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tests.support.cel_limits import SEMANTICS_LIMITS
from vault.enclave.cel import CelEngine

ENGINE = CelEngine(limits=SEMANTICS_LIMITS)
SECRET = "Pv9SecretPlaintext"
FIELDS: dict[str, str | None] = {"first_name": SECRET, "dob": "1979-01-01", "ssn": None, "n": "42"}

# Pieces of CEL that combine into mostly well-formed, often failing, expressions.
_ATOMS = st.sampled_from(
    [
        "first_name", "dob", "ssn", "n", "missing", "1", "0", "-1", "2u", "1.5", "true", "null",
        "'text'", "b'by'", "[]", "[1, 'a']", "{'k': 1}", "{1: first_name}", "date(dob)",
        "duration('1h')", "timestamp('2024-01-01T00:00:00Z')", "type(1)", "double('nan')",
    ]
)  # fmt: skip
_UNARY = st.sampled_from(
    [
        "{}.to_uppercase()", "{}.sha256()", "{}.hex_decode()", "{}.base64_decode()", "date({})",
        "{}.age()", "size({})", "int({})", "string({})", "-{}", "!{}", "({})", "[{}]", "{}.is_empty()",
        "max({})", "{}.substring(1)", "{}[0]", "{}.x", "has({}.x)", "{}.getHours()", "[{}].map(v, v)",
        "[{}].filter(v, v == 1)", "[{}].exists_one(v, v)", "unknown({})", "{}.nope()",
    ]
)  # fmt: skip
_BINARY = st.sampled_from(
    ["{} + {}", "{} - {}", "{} * {}", "{} / {}", "{} % {}", "{} == {}", "{} < {}", "{} && {}",
     "{} || {}", "{} in {}", "{} ? {} : 1", "max({}, {})", "{}.contains({})", "[{}, {}]"]
)  # fmt: skip

cel_like = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.builds(str.format, _UNARY, inner),
        st.builds(lambda template, left, right: template.format(left, right), _BINARY, inner, inner),
    ),
    max_leaves=12,
)
names = st.text(min_size=1, max_size=12)


def _check(fields: dict[str, str | None], expressions: dict[str, str]) -> None:
    result = ENGINE.evaluate(fields, expressions)
    # Error entries come in request order, one per failed expression, in the documented shape.
    entries = iter(result.errors)
    pending = next(entries, None)
    for name in expressions:
        if pending is not None and pending.startswith(
            (f"[{name}] Compile Error: ", f"[{name}] Execution Error: ")
        ):
            assert result.values[name] is None
            assert SECRET not in pending
            pending = next(entries, None)
    assert pending is None, result.errors
    # Fields not overwritten keep their values; everything is strict JSON.
    for name, value in fields.items():
        if name not in expressions:
            assert result.values[name] == value
    assert set(result.values) == set(fields) | set(expressions)
    json.dumps(result.values, allow_nan=False)


@given(st.dictionaries(names, st.text(max_size=60), max_size=4))
def test_arbitrary_text_never_raises(expressions: dict[str, str]) -> None:
    _check(dict(FIELDS), expressions)


@given(st.dictionaries(names, cel_like, min_size=1, max_size=4))
def test_cel_like_expressions_never_raise(expressions: dict[str, str]) -> None:
    _check(dict(FIELDS), expressions)


@given(cel_like)
def test_failing_expressions_keep_every_field(expression: str) -> None:
    result = ENGINE.evaluate(FIELDS, {"out": expression})
    for name, value in FIELDS.items():
        assert result.values[name] == value
    if result.values["out"] is None and result.errors:
        assert result.errors == [result.errors[0]]
        assert SECRET not in result.errors[0]


@given(st.text(alphabet=st.characters(categories=["Ll"]), max_size=40))
def test_uppercasing_a_lowercase_field_in_place(value: str) -> None:
    result = ENGINE.evaluate({"field": value}, {"field": "field.to_uppercase()"})
    assert result.values == {"field": value.upper()}
    assert result.errors == []
