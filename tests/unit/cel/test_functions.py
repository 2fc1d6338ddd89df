"""The vault's function library (spec 6.2) and the standard functions added to cel-python."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator

import pytest

from unit.cel.support import FIXED_NOW, error_of, evaluate_one
from vault.enclave.cel import CelEngine

FUNCTIONS_ON_BOB = {
    "is_empty": False,
    "to_lowercase": "bob",
    "to_uppercase": "BOB",
    "sha256": "cd9fb1e148ccd8442e5aa74904cc73bf6fb54d1d54d333bd596aa9bb4bb4e961",
    "hex_encode": "426f62",
    "base64_encode": "Qm9i",
}


@pytest.mark.parametrize(("name", "expected"), FUNCTIONS_ON_BOB.items())
def test_method_and_global_forms_agree(engine: CelEngine, name: str, expected: object) -> None:
    fields: dict[str, str | None] = {"n": "Bob"}
    assert evaluate_one(engine, f"n.{name}()", fields) == expected
    assert evaluate_one(engine, f"{name}(n)", fields) == expected


@pytest.mark.parametrize(
    ("method", "global_"),
    [
        ("'426f62'.hex_decode()", "hex_decode('426f62')"),
        ("'Qm9i'.base64_decode()", "base64_decode('Qm9i')"),
        ("'1979-04-05'.date()", "date('1979-04-05')"),
        ("date('1979-04-05').age()", "age(date('1979-04-05'))"),
        ("'Bob'.sha384()", "sha384('Bob')"),
        ("'Bob'.sha512()", "sha512('Bob')"),
        ("'abcdef'.substring(1, 3)", "substring('abcdef', 1, 3)"),
        ("[3, 9, 4].max()", "max([3, 9, 4])"),
    ],
)
def test_other_functions_in_both_forms(fixed_engine: CelEngine, method: str, global_: str) -> None:
    assert evaluate_one(fixed_engine, method) == evaluate_one(fixed_engine, global_)


def test_unicode_case_mapping(engine: CelEngine) -> None:
    assert evaluate_one(engine, "'straße'.to_uppercase()") == "STRASSE"
    assert evaluate_one(engine, "'ΟΔΟΣ'.to_lowercase()") == "οδος"
    assert evaluate_one(engine, "'İ'.to_lowercase()") == "i̇"


@pytest.mark.parametrize(
    ("argument", "detail"),
    [
        ("'4'", "odd number of hex digits"),
        ("'426F62'", "invalid character in hex string (lowercase hex digits only)"),
        ("'zz'", "invalid character in hex string (lowercase hex digits only)"),
        ("'ff'", "decoded bytes are not valid UTF-8"),
    ],
)
def test_hex_decode_refusals(engine: CelEngine, argument: str, detail: str) -> None:
    assert error_of(engine, f"{argument}.hex_decode()") == (
        f"[out] Execution Error: Error executing function 'hex_decode': {detail}"
    )


def test_hex_decode_of_empty_and_multibyte(engine: CelEngine) -> None:
    assert evaluate_one(engine, "''.hex_decode()") == ""
    assert evaluate_one(engine, "'c3a9'.hex_decode()") == "é"


@pytest.mark.parametrize(
    "argument",
    ["'Qm9'", "'Qm9i='", "'QR=='", "'Qm9i\\n'", "' Qm9i'", "'Qm-i'", "'Qm_i'", "'Zm9v===='", "'é'"],
)
def test_base64_decode_is_strict(engine: CelEngine, argument: str) -> None:
    assert error_of(engine, f"{argument}.base64_decode()") == (
        "[out] Execution Error: Error executing function 'base64_decode': "
        "invalid base64 (standard alphabet, padding required)"
    )


def test_base64_decode_requires_utf8(engine: CelEngine) -> None:
    assert error_of(engine, "'/w=='.base64_decode()") == (
        "[out] Execution Error: Error executing function 'base64_decode': decoded bytes are not valid UTF-8"
    )


def test_base64_uses_the_standard_alphabet_with_padding(engine: CelEngine) -> None:
    assert evaluate_one(engine, "'\u00ff\u00fe'.base64_encode()") == "w7/Dvg=="
    assert evaluate_one(engine, "'w7/Dvg=='.base64_decode()") == "\u00ff\u00fe"
    assert evaluate_one(engine, "''.base64_decode()") == ""


class TestDate:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1979-04-05", "1979-04-05T00:00:00+00:00"),
            ("1979-4-5", "1979-04-05T00:00:00+00:00"),
            ("+1979-04-05", "1979-04-05T00:00:00+00:00"),
            ("79-04-05", "0079-04-05T00:00:00+00:00"),
            ("2024-02-29", "2024-02-29T00:00:00+00:00"),
            ("9999-12-31", "9999-12-31T00:00:00+00:00"),
        ],
    )
    def test_accepted_forms(self, engine: CelEngine, text: str, expected: str) -> None:
        assert evaluate_one(engine, f"date('{text}')") == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "premature end of input"),
            ("1979", "premature end of input"),
            ("1979-", "premature end of input"),
            ("1979-04-", "premature end of input"),
            ("x", "input contains invalid characters"),
            (" 1979-04-05", "input contains invalid characters"),
            ("1979/04/05", "input contains invalid characters"),
            ("19790-04-05", "input contains invalid characters"),
            ("1979-004-05", "input is out of range"),  # month "00", as chrono reads two digits
            ("\uff11\uff19\uff17\uff19-04-05", "input contains invalid characters"),  # full-width digits
            ("1979-04-05 ", "trailing input"),
            ("1979-04-055", "trailing input"),
            ("1979-04-05T00:00:00Z", "trailing input"),
            ("1979-13-05", "input is out of range"),
            ("1979-00-05", "input is out of range"),
            ("1979-04-32", "input is out of range"),
            ("2023-02-29", "input is out of range"),
            ("1979-04-31", "input is out of range"),
            ("+99999999999999999999-01-01", "input is out of range"),
        ],
    )
    def test_refusals_carry_chronos_messages(self, engine: CelEngine, text: str, message: str) -> None:
        assert error_of(engine, f"date('{text}')") == (
            f"[out] Execution Error: Error executing function 'date': {message}"
        )

    @pytest.mark.parametrize("text", ["0000-01-01", "-0001-01-01", "+10000-01-01"])
    def test_years_python_cannot_represent_are_out_of_range(self, engine: CelEngine, text: str) -> None:
        assert error_of(engine, f"date('{text}')").endswith("input is out of range")

    def test_null_field(self, engine: CelEngine) -> None:
        assert error_of(engine, "date(d)", {"d": None}) == (
            "[out] Execution Error: Error executing function 'date': "
            "expected a string argument, got null_type"
        )


class TestAgeAndToday:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("date('2000-06-15').age()", 24),  # birthday today (now is 12:30 UTC)
            ("date('2000-06-16').age()", 23),  # birthday tomorrow
            ("date('2000-06-14').age()", 24),
            ("date('2024-06-15').age()", 0),
            ("date('2030-01-01').age()", 0),  # future dates are 0, not negative
            ("timestamp('2000-06-15T12:30:00Z').age()", 24),  # to the second
            ("timestamp('2000-06-15T12:30:01Z').age()", 23),
            # In the timestamp's own offset it is already 16 June 02:30 at +14:00.
            ("timestamp('2000-06-15T23:00:00+14:00').age()", 24),
            ("timestamp('2000-06-15T13:00:00Z').age()", 23),
        ],
    )
    def test_age(self, fixed_engine: CelEngine, expression: str, expected: int) -> None:
        value = evaluate_one(fixed_engine, expression)
        assert value == expected
        assert type(value) is int

    def test_leap_day_birthday_is_reached_on_first_of_march(self) -> None:
        for now, expected in [
            (datetime.datetime(2023, 2, 28, 23, 0, tzinfo=datetime.UTC), 22),
            (datetime.datetime(2023, 3, 1, 0, 0, tzinfo=datetime.UTC), 23),
            (datetime.datetime(2024, 2, 29, 0, 0, tzinfo=datetime.UTC), 24),
        ]:
            engine = CelEngine(clock=lambda now=now: now)
            assert evaluate_one(engine, "date('2000-02-29').age()") == expected

    def test_age_needs_a_timestamp(self, engine: CelEngine) -> None:
        assert error_of(engine, "'2000-01-01'.age()") == (
            "[out] Execution Error: Error executing function 'age': expected a timestamp argument, got string"
        )

    def test_today_utc(self, fixed_engine: CelEngine) -> None:
        assert evaluate_one(fixed_engine, "today_utc()") == "2024-06-15T00:00:00+00:00"

    def test_today_utc_uses_the_utc_date(self) -> None:
        # 23:30 at -05:00 on the 14th is the 15th in UTC.
        minus_five = datetime.timezone(datetime.timedelta(hours=-5))
        engine = CelEngine(clock=lambda: datetime.datetime(2024, 6, 14, 23, 30, tzinfo=minus_five))
        assert evaluate_one(engine, "today_utc()") == "2024-06-15T00:00:00+00:00"

    def test_today_with_the_real_clock(self, engine: CelEngine) -> None:
        before = datetime.datetime.now(datetime.UTC).date()
        value = evaluate_one(engine, "today_utc()")
        after = datetime.datetime.now(datetime.UTC).date()
        assert value in {f"{day.isoformat()}T00:00:00+00:00" for day in (before, after)}

    def test_age_compared_with_today(self, fixed_engine: CelEngine) -> None:
        assert evaluate_one(fixed_engine, "date('2000-01-01') < today_utc()") is True


class TestSubstring:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("'tacocat'.substring(4)", "cat"),
            ("'tacocat'.substring(0, 4)", "taco"),
            ("'tacocat'.substring(7)", ""),
            ("'héllo'.substring(1, 2)", "é"),
            ("'***-**-' + ssn.substring(size(ssn) - 4)", "***-**-6789"),
        ],
    )
    def test_slices_by_code_point(self, engine: CelEngine, expression: str, expected: str) -> None:
        assert evaluate_one(engine, expression, {"ssn": "123-45-6789"}) == expected

    @pytest.mark.parametrize(
        ("expression", "detail"),
        [
            ("'abc'.substring(4)", "index out of range"),
            ("'abc'.substring(-1)", "index out of range"),
            ("'abc'.substring(0, 5)", "index out of range"),
            ("'abc'.substring(2, 1)", "invalid substring range (end before start)"),
            ("'abc'.substring('1')", "expected an int argument, got string"),
            ("'abc'.substring(true)", "expected an int argument, got bool"),
        ],
    )
    def test_refusals(self, engine: CelEngine, expression: str, detail: str) -> None:
        assert (
            error_of(engine, expression)
            == f"[out] Execution Error: Error executing function 'substring': {detail}"
        )


class TestMaxMin:
    @pytest.mark.parametrize(
        ("expression", "expected"),
        [
            ("max(1, 5, 3)", 5),
            ("max([1, 5, 3])", 5),
            ("[1, 5, 3].max()", 5),
            ("max(7)", 7),
            ("max([])", None),
            ("max()", None),
            ("max('a', 'b')", "b"),
            ("max(1.5, 0.5)", 1.5),
            ("min(1, 5, 3)", 1),
            ("min([4, 2])", 2),
            ("[4, 2].min()", 2),
            ("min(date('2000-01-01'), date('1999-01-01'))", "1999-01-01T00:00:00+00:00"),
            # Numbers of different types are ordered by value, as by "<"; of equal ones the last wins.
            ("max(1, 2u)", 2),
            ("max(1, 2.5, 2u)", 2.5),
            ("min(3u, -1, 0.5)", -1),
            ("max([1.0, 1])", 1),
        ],
    )
    def test_values(self, engine: CelEngine, expression: str, expected: object) -> None:
        assert evaluate_one(engine, expression) == expected

    @pytest.mark.parametrize(
        ("expression", "detail"),
        [
            ("max(1, 'a')", "values of type int and string are not comparable"),
            ("max(1, true)", "values of type int and bool are not comparable"),
            ("min([1], [2])", "values of type list and list are not comparable"),
            ("max(double('nan'), 1.0)", "values are not comparable"),
        ],
    )
    def test_incomparable_values(self, engine: CelEngine, expression: str, detail: str) -> None:
        function = "max" if expression.startswith("max") else "min"
        assert (
            error_of(engine, expression)
            == f"[out] Execution Error: Error executing function '{function}': {detail}"
        )


@pytest.fixture
def far_time_zone() -> Iterator[None]:
    """Run with a host time zone far from UTC."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.mark.usefixtures("far_time_zone")
class TestTimestampAccessors:
    @pytest.mark.parametrize(
        ("accessor", "expected"),
        [
            ("getFullYear()", 2024),
            ("getMonth()", 0),
            ("getDate()", 31),
            ("getDayOfMonth()", 30),
            ("getDayOfWeek()", 3),
            ("getDayOfYear()", 30),
            ("getHours()", 22),
            ("getMinutes()", 58),
            ("getSeconds()", 44),
            ("getMilliseconds()", 250),
        ],
    )
    def test_without_time_zone_use_the_timestamps_offset(
        self, engine: CelEngine, accessor: str, expected: int
    ) -> None:
        assert evaluate_one(engine, f"timestamp('2024-01-31T22:58:44.25Z').{accessor}") == expected

    def test_offset_is_kept(self, engine: CelEngine) -> None:
        assert evaluate_one(engine, "timestamp('2024-01-31T22:58:44+02:00').getHours()") == 22

    def test_with_time_zone(self, engine: CelEngine) -> None:
        assert evaluate_one(engine, "timestamp('2024-01-31T22:58:44Z').getHours('+02:00')") == 0
        assert evaluate_one(engine, "timestamp('2024-01-31T22:58:44Z').getDate('+02:00')") == 1

    def test_unknown_time_zone(self, engine: CelEngine) -> None:
        assert error_of(engine, "timestamp('2024-01-31T22:58:44Z').getHours('Nowhere/Else')") == (
            "[out] Execution Error: Error executing function 'getHours': unknown time zone"
        )

    def test_durations_keep_cel_pythons_behaviour(self, engine: CelEngine) -> None:
        assert evaluate_one(engine, "duration('3h').getHours()") == 3


def test_matches_uses_re2(engine: CelEngine) -> None:
    assert evaluate_one(engine, "'123-45-6789'.matches('^[0-9]{3}-[0-9]{2}-[0-9]{4}$')") is True
    assert error_of(engine, "'x'.matches('(')") == (
        "[out] Execution Error: Error executing function 'matches': invalid regular expression"
    )


def test_fixed_now_is_used(fixed_engine: CelEngine) -> None:
    assert FIXED_NOW.year == evaluate_one(fixed_engine, "today_utc().getFullYear()")
