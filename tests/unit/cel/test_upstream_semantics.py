"""Operators and conversions as the upstream enclave's interpreter (Rust ``cel``) has them.

Numbers compare across int, uint and double; ``==`` between other types is false;
``||``/``&&`` take bools only; int64 overflow and non-Unicode literals are errors;
``size`` counts code points (the CEL spec) and ``string()`` formats as upstream.
"""

from __future__ import annotations

import pytest

from unit.cel.support import error_of, evaluate_one
from vault.enclave.cel import CelEngine


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 == 1.0", True),
        ("dyn(1) == 1.0", True),
        ("1u == 1", True),
        ("1.0 == 1u", True),
        ("1 != 1.0", False),
        ("-1 == 18446744073709551615u", False),
        ("-1 < 1u", True),
        ("1u < 2.5", True),
        ("2.5 > 2", True),
        ("3u >= 3.0", True),
        ("18446744073709551615u > 9223372036854775807", True),
        ("-9223372036854775808 < 0.5", True),
        # As upstream: with a double on either side both are compared as doubles.
        ("9007199254740993 == 9007199254740992.0", True),
        ("-0.0 == 0", True),
        ("double('nan') == double('nan')", False),
        ("double('nan') != double('nan')", True),
        # Heterogeneous equality is false, not an error.
        ("1 == 'a'", False),
        ("1 != 'a'", True),
        ("true == 1", False),
        ("null == 1", False),
        ("null == null", True),
        ("b'a' == 'a'", False),
        ("duration('1h') == 3600", False),
        # Lists and maps compare element by element with the same rule; map keys keep their type.
        ("[1, 2] == [1.0, 2u]", True),
        ("[[1]] == [[1.0]]", True),
        ("[1, 2] == [1]", False),
        ("{'a': 1} == {'a': 1.0}", True),
        ("{'a': [1]} == {'a': [1u]}", True),
        ("{1: 'a'} == {1u: 'a'}", False),
        ("{'a': 1} == {'b': 1}", False),
        ("1u in [1]", True),
        ("2 in [1.0, 2.0]", True),
        ("'a' in [1]", False),
        ("1 in {1: 2}", True),
        ("1u in {1: 2}", False),
        ("[1, 2].exists(x, x == 1.0)", True),
        ("type(1) == int", True),
        ("type(1) == type(2u)", False),
        ("'a' < 'b'", True),
        ("b'a' < b'b'", True),
        ("true > false", True),
        ("duration('1h') < duration('2h')", True),
        ("timestamp('2024-01-01T00:00:00Z') < timestamp('2025-01-01T00:00:00Z')", True),
    ],
)
def test_comparisons(engine: CelEngine, expression: str, expected: bool) -> None:
    assert evaluate_one(engine, expression) is expected


def test_age_compares_with_an_int(fixed_engine: CelEngine) -> None:
    # age() is a uint: before, "uint == int" had no overload.
    fields: dict[str, str | None] = {"dob": "1984-01-01"}
    assert evaluate_one(fixed_engine, "date(dob).age() == 40", fields) is True
    assert evaluate_one(fixed_engine, "date(dob).age() >= 18 && date(dob).age() < 40.5", fields) is True


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("1 < 'a'", "No such overload: _<_ applied to (int, string)"),
        ("true > 1", "No such overload: _>_ applied to (bool, int)"),
        ("null < null", "No such overload: _<_ applied to (null_type, null_type)"),
        ("[1] < [2]", "No such overload: _<_ applied to (list, list)"),
        ("double('nan') < 1.0", "No such overload: _<_ applied to (double, double)"),
        ("1.0 in {1: 2}", "No such overload: @in applied to (double, map)"),
        ("false || null", "No such overload: _||_ applied to (bool, null_type)"),
        ("null || false", "No such overload: _||_ applied to (null_type, bool)"),
        ("false || 1", "No such overload: _||_ applied to (bool, int)"),
        ("true && null", "No such overload: _&&_ applied to (bool, null_type)"),
        ("1 && true", "No such overload: _&&_ applied to (int, bool)"),
        ("false || 1 / 0 > 1", "modulus or divide by zero"),
        ("-9223372036854775808 % -1", "return error for overflow"),
        ("-9223372036854775808 / -1", "return error for overflow"),
        ("size(null)", "Error executing function 'size': no such overload"),
        ("size(1)", "Error executing function 'size': no such overload"),
        ("string(null)", "Error executing function 'string': no such overload"),
        ("string([1])", "Error executing function 'string': no such overload"),
        ("string(b'\\xff')", "Error executing function 'string': decoded bytes are not valid UTF-8"),
    ],
)
def test_errors(engine: CelEngine, expression: str, detail: str) -> None:
    assert error_of(engine, expression) == f"[out] Execution Error: {detail}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true || null", True),
        ("null || true", True),
        ("null && false", False),
        ("false && null", False),
        ("x || true", True),
        ("1 / 0 > 1 || true", True),
        ("-9223372036854775807 % -1", 0),
        ("-9223372036854775807 / -1", 9223372036854775807),
        ("-5 % 3", -2),
        ("-5 / 3", -1),
        # Concatenations are CEL values with their methods.
        ("('a' + 'b').contains('a')", True),
        ("(b'a' + b'b').contains(b'a')", True),
        ("([1] + [2]).size()", 2),
    ],
)
def test_values(engine: CelEngine, expression: str, expected: object) -> None:
    assert evaluate_one(engine, expression) == expected


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("'\\ud800'", "invalid string literal: surrogate code point"),
        ("'\\udc00'", "invalid string literal: surrogate code point"),
        ("'\\ud83d\\ude00'", "invalid string literal: surrogate code point"),
        ('"""\\ud800"""', "invalid string literal: surrogate code point"),
        ("'\\U00110000'", "invalid string literal: escape out of the Unicode range"),
        ("b'\\u0041'", "invalid bytes literal: \\u escape"),
    ],
)
def test_literals_that_are_not_unicode_text_do_not_compile(
    engine: CelEngine, expression: str, detail: str
) -> None:
    assert error_of(engine, expression) == f"[out] Compile Error: {detail}"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'\\U0010ffff'", "\U0010ffff"),
        ("'\\\\ud800'", "\\ud800"),
        ("r'\\ud800'", "\\ud800"),
        ("'\\xff'", "ÿ"),
        ("b'\\\\u0041'", "XHUwMDQx"),
    ],
)
def test_valid_escapes_still_compile(engine: CelEngine, expression: str, expected: str) -> None:
    assert evaluate_one(engine, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Code points, as the CEL spec says (upstream counts UTF-8 bytes: 6 and 4).
        ("size('héllo')", 5),
        ("'ßİ'.size()", 2),
        ("size(b'ab')", 2),
        ("size([1, 2])", 2),
        ("size({'a': 1})", 1),
    ],
)
def test_size(engine: CelEngine, expression: str, expected: int) -> None:
    assert evaluate_one(engine, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("string('a')", "a"),
        ("string(-5)", "-5"),
        ("string(1u)", "1"),
        ("string(1.5)", "1.5"),
        ("string(1.0)", "1"),
        ("string(-0.0)", "-0"),
        ("string(1e20)", "100000000000000000000"),
        ("string(1e-7)", "0.0000001"),
        ("string(double('nan'))", "NaN"),
        ("string(double('-inf'))", "-inf"),
        ("string(true)", "true"),
        ("string(b'a')", "a"),
        ("string(timestamp('2024-01-01T00:00:00.5Z'))", "2024-01-01T00:00:00.500+00:00"),
        ("string(duration('90m'))", "1h30m0s"),
        ("string(duration('26h'))", "26h0m0s"),
        ("string(duration('61s'))", "1m1s"),
        ("string(duration('1.5s'))", "1.5s"),
        ("string(duration('1ms'))", "1ms"),
        ("string(duration('1us'))", "1µs"),
        ("string(duration('0s'))", "0s"),
    ],
)
def test_string_conversion(engine: CelEngine, expression: str, expected: str) -> None:
    assert evaluate_one(engine, expression) == expected
