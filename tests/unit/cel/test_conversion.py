"""Result → JSON conversion (spec 6.1)."""

from __future__ import annotations

import datetime

import pytest

from unit.cel.support import error_of, evaluate_one
from vault.enclave.cel import CelEngine
from vault.enclave.cel.convert import duration_nanoseconds, rfc3339


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'text'", "text"),
        ("42", 42),
        ("-7", -7),
        ("42u", 42),
        ("2.5", 2.5),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', [true]]", [1, "a", [True]]),
        ("[]", []),
        ("{}", {}),
        ("{'a': {'b': [1]}}", {"a": {"b": [1]}}),
    ],
)
def test_scalars_and_containers(engine: CelEngine, expression: str, expected: object) -> None:
    value = evaluate_one(engine, expression)
    assert value == expected
    assert type(value) is type(expected)


def test_map_keys_are_stringified(engine: CelEngine) -> None:
    assert evaluate_one(engine, "{1: 'int', 'k': 'string', 2u: 'uint'}") == {
        "1": "int",
        "k": "string",
        "2": "uint",
    }
    # cel-python cannot mix bool keys with int keys in one literal, so they get their own map.
    assert evaluate_one(engine, "{true: 1, false: 0}") == {"true": 1, "false": 0}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("b'Bob'", "Qm9i"),
        ("b''", ""),
        ("bytes('é')", "w6k="),
        (r"b'\xff\x00'", "/wA="),
    ],
)
def test_bytes_become_padded_standard_base64(engine: CelEngine, expression: str, expected: str) -> None:
    assert evaluate_one(engine, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("date('1979-04-05')", "1979-04-05T00:00:00+00:00"),
        ("timestamp('2024-04-09T18:58:44Z')", "2024-04-09T18:58:44+00:00"),
        ("timestamp('2024-04-09T18:58:44+02:00')", "2024-04-09T18:58:44+02:00"),
        ("timestamp('2024-04-09T18:58:44-05:30')", "2024-04-09T18:58:44-05:30"),
        ("timestamp('2024-04-09T18:58:44.5Z')", "2024-04-09T18:58:44.500+00:00"),
        ("timestamp('2024-04-09T18:58:44.123456Z')", "2024-04-09T18:58:44.123456+00:00"),
        ("date('0999-01-02')", "0999-01-02T00:00:00+00:00"),
    ],
)
def test_timestamps_are_rfc3339_with_numeric_offset(
    engine: CelEngine, expression: str, expected: str
) -> None:
    value = evaluate_one(engine, expression)
    assert value == expected
    assert isinstance(value, str)
    assert not value.endswith("Z")


@pytest.mark.parametrize(
    ("expression", "nanoseconds"),
    [
        ("duration('1h')", 3_600_000_000_000),
        ("duration('1.5ms')", 1_500_000),
        ("duration('-2s')", -2_000_000_000),
        ("duration('0s')", 0),
        ("timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z')", 86_400_000_000_000),
    ],
)
def test_durations_are_integer_nanoseconds(engine: CelEngine, expression: str, nanoseconds: int) -> None:
    value = evaluate_one(engine, expression)
    assert value == nanoseconds
    assert type(value) is int


def test_durations_have_microsecond_resolution(engine: CelEngine) -> None:
    # cel-python's durations are datetime.timedelta: rounded to whole microseconds (half to even).
    assert evaluate_one(engine, "duration('1ns')") == 0
    assert evaluate_one(engine, "duration('1500ns')") == 2000
    assert evaluate_one(engine, "duration('2500ns')") == 2000


@pytest.mark.parametrize(
    ("expression", "detail"),
    [
        ("type(1)", "a value of type type cannot be converted to JSON"),
        ("double('nan')", "a non-finite double cannot be converted to JSON"),
        ("1.0 / 0.0", "a non-finite double cannot be converted to JSON"),
        ("{1.5: 'x'}", "map key of type double cannot be converted to JSON"),
        ("[1, type('a')]", "a value of type type cannot be converted to JSON"),
    ],
)
def test_unconvertible_values_fail_only_their_expression(
    engine: CelEngine, expression: str, detail: str
) -> None:
    result = engine.evaluate({"f": "v"}, {"bad": expression, "good": "f + '!'"})
    assert result.values == {"f": "v", "bad": None, "good": "v!"}
    assert result.errors == [f"[bad] Execution Error: {detail}"]


def test_unconvertible_output_is_null_for_later_expressions(engine: CelEngine) -> None:
    result = engine.evaluate({}, {"t": "type(1)", "is_null": "t == null"})
    assert result.values == {"t": None, "is_null": True}


def test_rfc3339_fraction_style() -> None:
    utc = datetime.UTC
    assert rfc3339(datetime.datetime(2020, 1, 1, tzinfo=utc)) == "2020-01-01T00:00:00+00:00"
    assert (
        rfc3339(datetime.datetime(2020, 1, 1, 0, 0, 0, 120_000, tzinfo=utc))
        == "2020-01-01T00:00:00.120+00:00"
    )
    assert (
        rfc3339(datetime.datetime(2020, 1, 1, 0, 0, 0, 1, tzinfo=utc)) == "2020-01-01T00:00:00.000001+00:00"
    )
    minus = datetime.timezone(-datetime.timedelta(hours=3, minutes=30))
    assert rfc3339(datetime.datetime(2020, 1, 1, tzinfo=minus)) == "2020-01-01T00:00:00-03:30"


def test_duration_nanoseconds_of_negative_spans() -> None:
    assert duration_nanoseconds(datetime.timedelta(microseconds=-1)) == -1000
    assert duration_nanoseconds(datetime.timedelta(days=-1, seconds=1)) == -86_399_000_000_000


def test_error_text_of_unconvertible(engine: CelEngine) -> None:
    assert (
        error_of(engine, "type('x')")
        == "[out] Execution Error: a value of type type cannot be converted to JSON"
    )
