"""Properties of the vault's CEL functions, checked through the engine."""

from __future__ import annotations

import datetime
import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from tests.support.cel_limits import SEMANTICS_LIMITS
from vault.enclave.cel import CelEngine
from vault.enclave.cel.dates import DateParseError, parse_iso_date, whole_years

ENGINE = CelEngine(limits=SEMANTICS_LIMITS)
# An engine whose clock a test sets, so that its compiled programs are reused across examples.
_NOW = [datetime.datetime.now(datetime.UTC)]
CLOCKED_ENGINE = CelEngine(clock=lambda: _NOW[0], limits=SEMANTICS_LIMITS)

# st.text() never produces lone surrogates, so every value is encodable UTF-8, as a
# decrypted field always is.
texts = st.text(max_size=200)


def _output(expression: str, **fields: str | None) -> object:
    result = ENGINE.evaluate(fields, {"out": expression})
    assert result.errors == [], result.errors
    return result.values["out"]


@given(texts)
def test_base64_round_trip(value: str) -> None:
    assert _output("base64_decode(base64_encode(s))", s=value) == value
    assert _output("s.base64_encode().base64_decode()", s=value) == value


@given(texts)
def test_hex_round_trip(value: str) -> None:
    assert _output("hex_decode(hex_encode(s))", s=value) == value
    encoded = _output("s.hex_encode()", s=value)
    assert isinstance(encoded, str)
    assert re.fullmatch("[0-9a-f]*", encoded)
    assert len(encoded) == 2 * len(value.encode("utf-8"))


@given(texts)
def test_digests_agree_with_hashlib(value: str) -> None:
    digests = ENGINE.evaluate({"s": value}, {"a": "s.sha256()", "b": "sha384(s)", "c": "s.sha512()"}).values
    data = value.encode("utf-8")
    assert digests["a"] == hashlib.sha256(data).hexdigest()
    assert digests["b"] == hashlib.sha384(data).hexdigest()
    assert digests["c"] == hashlib.sha512(data).hexdigest()
    assert [len(str(digests[name])) for name in "abc"] == [64, 96, 128]


@given(texts)
def test_to_uppercase_matches_python_and_is_idempotent(value: str) -> None:
    upper = _output("s.to_uppercase()", s=value)
    assert upper == value.upper()
    assert _output("s.to_uppercase().to_uppercase() == s.to_uppercase()", s=value) is True


@given(texts)
def test_to_lowercase_matches_python(value: str) -> None:
    assert _output("to_lowercase(s)", s=value) == value.lower()


@given(texts)
def test_is_empty_is_size_zero(value: str) -> None:
    assert _output("s.is_empty() == (size(s) == 0)", s=value) is True


@given(texts, st.integers(min_value=0, max_value=210), st.integers(min_value=0, max_value=210))
def test_substring_is_a_code_point_slice(value: str, start: int, end: int) -> None:
    result = ENGINE.evaluate({"s": value}, {"out": f"s.substring({start}, {end})"})
    if start <= end <= len(value):
        assert result.values["out"] == value[start:end]
    else:
        assert result.values["out"] is None
        assert result.errors[0].startswith("[out] Execution Error: Error executing function 'substring'")


# ---- dates ---------------------------------------------------------------------------

dates = st.dates(min_value=datetime.date(1, 1, 1), max_value=datetime.date(9999, 12, 31))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
)
moments = st.datetimes(
    min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(2100, 1, 1), timezones=offsets
)


@given(dates, st.booleans(), st.booleans())
def test_date_parses_padded_and_unpadded_forms(day: datetime.date, pad_year: bool, pad_rest: bool) -> None:
    year = f"{day.year:04d}" if pad_year else str(day.year)
    rest = f"{day.month:02d}-{day.day:02d}" if pad_rest else f"{day.month}-{day.day}"
    assert parse_iso_date(f"{year}-{rest}") == day


_REFERENCE_DATE = re.compile(r"(\+?[0-9]{1,4}|\+[0-9]+)-([0-9]{1,2})-([0-9]{1,2})", re.ASCII)


@given(st.text(alphabet="0123456789-+ x/T", max_size=14))
def test_date_accepts_exactly_the_reference_grammar(text: str) -> None:
    match = _REFERENCE_DATE.fullmatch(text)
    expected: datetime.date | None = None
    if match is not None:
        try:
            expected = datetime.date(*(int(group) for group in match.groups()))
        except ValueError:
            expected = None
    try:
        parsed: datetime.date | None = parse_iso_date(text)
    except DateParseError:
        parsed = None
    assert parsed == expected


def _reference_years(birth: datetime.datetime, now: datetime.datetime) -> int:
    """Count the anniversaries of ``birth`` (in its offset) that are not after ``now``."""
    local = now.astimezone(birth.tzinfo)
    key = (birth.month, birth.day, birth.time())
    return sum(
        1
        for year in range(birth.year + 1, local.year + 1)
        if (year, *key) <= (local.year, local.month, local.day, local.time())
    )


@given(moments, moments)
def test_whole_years_matches_the_reference(birth: datetime.datetime, now: datetime.datetime) -> None:
    assert whole_years(birth, now) == _reference_years(birth, now)


@given(dates, dates, moments)
def test_age_is_non_increasing_in_the_date(
    first: datetime.date, second: datetime.date, now: datetime.datetime
) -> None:
    earlier, later = sorted((first, second))
    _NOW[0] = now
    ages = CLOCKED_ENGINE.evaluate(
        {"a": earlier.isoformat(), "b": later.isoformat()},
        {"age_a": "date(a).age()", "age_b": "date(b).age()"},
    ).values
    assert isinstance(ages["age_a"], int)
    assert isinstance(ages["age_b"], int)
    assert ages["age_a"] >= ages["age_b"] >= 0
    birth = datetime.datetime(earlier.year, earlier.month, earlier.day, tzinfo=datetime.UTC)
    assert ages["age_a"] == _reference_years(birth, now)
