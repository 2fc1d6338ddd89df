"""Properties of the masking functions, checked through the engine and against Rust ``cel``."""

from __future__ import annotations

import datetime
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from property.cel.reference import FIXED_NOW, ReferenceEngine
from tests.support.cel_limits import SEMANTICS_LIMITS
from vault.enclave.cel import CelEngine

ENGINE = CelEngine(clock=lambda: FIXED_NOW, limits=SEMANTICS_LIMITS)
REFERENCE = ReferenceEngine()
texts = st.text(max_size=60)
INT64 = st.integers(-(2**63), 2**63 - 1)


def _output(expression: str, **fields: str | None) -> object:
    result = ENGINE.evaluate(fields, {"out": expression})
    assert result.errors == [], result.errors
    return result.values["out"]


@given(texts, st.integers(0, 80))
def test_mask_keeps_length_and_tail_and_hides_something(value: str, keep: int) -> None:
    masked = _output(f"mask(s, {keep})", s=value)
    assert isinstance(masked, str)
    assert len(masked) == len(value)
    if keep < len(value):
        assert masked == "*" * (len(value) - keep) + value[len(value) - keep :]
    else:
        assert masked == "*" * len(value)
    # A non-empty value is never shown whole.
    assert not value or masked != value or set(value) == {"*"}


@given(texts, texts.filter(lambda text: "@" not in text and text != ""))
def test_email_domain_is_the_lowercased_text_after_the_last_at(local: str, domain: str) -> None:
    assert _output("email_domain(e)", e=f"{local}@{domain}") == domain.lower()


@given(texts.filter(lambda text: "@" not in text))
def test_email_domain_without_an_at_is_an_error_without_the_value(value: str) -> None:
    result = ENGINE.evaluate({"e": value}, {"out": "email_domain(e)"})
    assert result.values["out"] is None
    assert result.errors == [
        "[out] Execution Error: Error executing function 'email_domain': no '@' in the email address"
    ]


@given(st.dates(datetime.date(1, 1, 1), datetime.date(9999, 12, 31)))
def test_year_of_a_date_and_of_its_timestamp(day: datetime.date) -> None:
    assert _output("year(d)", d=day.isoformat()) == day.year
    assert _output("year(date(d)) == date(d).getFullYear()", d=day.isoformat()) is True


@given(INT64, st.integers(1, 2**64 - 1))
def test_bucket_of_ints_is_the_greatest_multiple_not_above(number: int, size: int) -> None:
    suffix = "u" if size >= 2**63 else ""
    result = ENGINE.evaluate({}, {"out": f"bucket({number}, {size}{suffix})"})
    floor = number - number % size
    if floor < -(2**63):
        assert result.values["out"] is None
        assert result.errors == [
            "[out] Execution Error: Error executing function 'bucket': result out of int range"
        ]
        return
    assert result.errors == []
    assert result.values["out"] == floor
    assert floor <= number < floor + size
    assert floor % size == 0


@given(st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1))
def test_bucket_of_uints_stays_a_uint(number: int, size: int) -> None:
    expression = (
        f"type(bucket({number}u, {size}u)) == uint && bucket({number}u, {size}u) == {number - number % size}u"
    )
    assert _output(expression) is True


@given(
    st.floats(-1e15, 1e15, allow_nan=False),
    st.floats(1e-3, 1e6, allow_nan=False),
)
def test_bucket_of_doubles(number: float, size: float) -> None:
    value = _output(f"bucket({number!r}, {size!r})")
    assert isinstance(value, float)
    # The floor of the rounded quotient, times size: within a few roundings of the exact
    # bounds value <= number < value + size (compared exactly, as fractions).
    exact_value, exact_number, exact_size = Fraction(value), Fraction(number), Fraction(size)
    slack = 4 * Fraction(math.ulp(abs(number) + size))
    assert exact_value <= exact_number + slack
    assert exact_number < exact_value + exact_size + slack


# The reference implements the functions afresh from their description; both must agree.
@pytest.mark.parametrize(
    "expression",
    [
        "mask('123456789', 4)",
        "'123456789'.mask(4)",
        "mask('123', 4)",
        "mask('', 0)",
        "mask('héllo', 1u)",
        "mask('abc', -1)",
        "mask('abc', 1.0)",
        "mask(1, 1)",
        "email_domain('Bob@Example.COM')",
        "'a@b@C'.email_domain()",
        "email_domain('bob')",
        "email_domain('bob@')",
        "year('1979-04-05')",
        "'1979-04-05'.year()",
        "year(date('1979-04-05'))",
        "year(timestamp('2020-12-31T23:00:00-05:00'))",
        "year('1979-02-30')",
        "year('Bob')",
        "year(1979)",
        "bucket(47, 10)",
        "bucket(-1, 10)",
        "(47).bucket(10)",
        "bucket(date('1979-04-05').age(), 10)",
        "bucket(date('1979-04-05').age(), 10) == 40",
        "bucket(4.7, 1.0)",
        "bucket(1.0, 0.1)",
        "bucket(0.3, 0.1)",
        "bucket(47, 2.5)",
        "bucket(47, 0)",
        "bucket(47, -1)",
        "bucket(4.7, 0.0)",
        "bucket(double('nan'), 1.0)",
        "bucket(-9223372036854775808, 10)",
        "bucket(true, 1)",
        "bucket('47', 10)",
    ],
)
def test_masking_functions_agree_with_the_reference(expression: str) -> None:
    ours = ENGINE.evaluate({}, {"out": expression})
    theirs = REFERENCE.evaluate({}, {"out": expression})["out"]
    assert (ours.errors == []) is theirs.ok, (ours.errors, theirs)
    if theirs.ok:
        value = ours.values["out"]
        assert value == theirs.value
        assert type(value) is type(theirs.value)
