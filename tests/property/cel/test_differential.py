"""The vault's CEL engine against Rust ``cel`` (``common-expression-language``), on generated requests.

Expressions come from the project's CEL grammar (:mod:`property.stack.cel_grammar`),
field values from the API's strategies. For every expression both engines must agree on
success or failure and, on success, on the JSON value (type included: ``1`` is not
``true``, ``1.0`` is not ``"1.0"``). A disagreement fails the test unless an entry of
:data:`property.cel.reference.KNOWN_DIFFERENCES` explains it, or the expression reads
an earlier output that differed for such a reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from property.api.strategies import FIELD_VALUES
from property.cel.reference import FIXED_NOW, KNOWN_DIFFERENCES, Outcome, ReferenceEngine, explain
from property.stack.cel_grammar import expression_maps
from tests.support.cel_limits import SEMANTICS_LIMITS
from vault.api.models import SCHEMA_FIELDS
from vault.enclave.cel import CelEngine

ENGINE = CelEngine(clock=lambda: FIXED_NOW, limits=SEMANTICS_LIMITS)
REFERENCE = ReferenceEngine()
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _same(ours: object, theirs: object) -> bool:
    """Equal JSON values of the same JSON type (Python's ``True == 1`` does not count)."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs) and ours == theirs
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return ours == theirs
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    return type(ours) is type(theirs) and ours == theirs


def _disagreements(fields: Mapping[str, str | None], expressions: Mapping[str, str]) -> list[str]:
    result = ENGINE.evaluate(fields, expressions)
    errors = {entry.split("]", 1)[0][1:]: entry for entry in result.errors}
    reference = REFERENCE.evaluate(fields, expressions)
    scope: dict[str, object] = dict(fields)
    # Outputs that differ for a documented reason; expressions reading them differ in turn.
    tainted: set[str] = set()
    found = []
    for name, text in expressions.items():
        error = errors.get(name)
        ours = Outcome(ok=error is None, value=result.values[name])
        theirs = reference[name]
        agree = ours.ok == theirs.ok and (not ours.ok or _same(ours.value, theirs.value))
        if not agree:
            known = explain(text, scope, error)
            inherited = sorted(tainted & set(_IDENTIFIER.findall(text)))
            note(f"{name}: {text!r}: ours {ours} ({error}), reference {theirs}, known: {known or inherited}")
            if known is None and not inherited:
                found.append(f"{text!r}: ours {ours} ({error}), reference {theirs}")
            tainted.add(name)
        scope[name] = result.values[name]
    return found


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, str | None], dict[str, str]]:
    names = draw(st.lists(st.sampled_from(SCHEMA_FIELDS), unique=True, min_size=1, max_size=5))
    fields: dict[str, str | None] = {name: draw(FIELD_VALUES[name]) for name in names}
    if draw(st.booleans()):
        # A field the vault does not hold decrypts to null.
        fields[draw(st.sampled_from(names))] = None
    return fields, draw(expression_maps(names, SCHEMA_FIELDS, min_size=1))


@given(requests())
def test_generated_expressions_agree_with_rust_cel(
    request: tuple[dict[str, str | None], dict[str, str]],
) -> None:
    fields, expressions = request
    assert _disagreements(fields, expressions) == []


# Each of the issue's findings, and each documented difference, pinned as an example.
@pytest.mark.parametrize(
    "expression",
    [
        "1 == 1.0",
        "dyn(1) == 1.0",
        "1u == 1",
        "1u < 2.5",
        "-1 < 1u",
        "[1, 2] == [1.0, 2u]",
        "{'a': 1} == {'a': 1.0}",
        "{1: 'a'} == {1u: 'a'}",
        "1u in [1]",
        "1u in {1: 2}",
        "1 == 'a'",
        "true == 1",
        "null == null",
        "null < null",
        "double('nan') < 1.0",
        "9007199254740993 == 9007199254740992.0",
        "-9223372036854775808 % -1",
        "-9223372036854775808 / -1",
        "'\\ud800'",
        "'\\U00110000'",
        "date(dob).age() == 45",
        "date(dob).age() > 44.5",
        "-5 % 3",
        "-5 / 3",
        "5u - 6u",
        "'abc'[0]",
    ],
)
def test_issue_examples_agree_with_rust_cel(expression: str) -> None:
    assert _disagreements({"dob": "1979-04-05"}, {"out": expression}) == []


@pytest.mark.parametrize(
    ("expression", "difference"),
    [
        ("size('é')", "size-counts-code-points"),
        ("'abc'.substring(1)", "substring"),
        ("max(1, 2)", "max-min"),
        ("-(-9223372036854775808)", "int-negation-overflow"),
        ("string(true)", "string-of-bool-and-bytes"),
        ("string(duration('0.0000015s'))", "microsecond-resolution"),
    ],
)
def test_documented_differences_are_real(expression: str, difference: str) -> None:
    # Each entry of the list must still describe an actual difference, or it is stale.
    (entry,) = [entry for entry in KNOWN_DIFFERENCES if entry.name == difference]
    ours = ENGINE.evaluate({}, {"out": expression})
    theirs = REFERENCE.evaluate({}, {"out": expression})["out"]
    assert (ours.errors == [], ours.values["out"]) != (theirs.ok, theirs.value)
    error = ours.errors[0] if ours.errors else None
    assert entry.applies(expression, {}, error)
    assert explain(expression, {}, error) is not None
