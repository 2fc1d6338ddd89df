"""Calendar rules behind the ``date`` and ``age`` CEL functions.

Upstream parses with chrono's ``NaiveDate::parse_from_str(text, "%Y-%m-%d")`` and
reports chrono's messages, so this module follows chrono's scanner: a year of one to
four digits (any number of digits after an explicit ``+``/``-``), a month and a day of
one or two digits each, ``-`` between them, nothing before or after.
"""

from __future__ import annotations

import datetime

# chrono's ParseErrorKind texts, which upstream returns verbatim.
OUT_OF_RANGE = "input is out of range"
INVALID = "input contains invalid characters"
TOO_SHORT = "premature end of input"
TOO_LONG = "trailing input"

_DIGITS = frozenset("0123456789")
_I64_MAX = 2**63 - 1
_I32 = range(-(2**31), 2**31)


class DateParseError(ValueError):
    """``str()`` is one of chrono's messages; it never quotes the input."""


def _number(text: str, max_digits: int | None) -> tuple[int, str]:
    """Scan one to ``max_digits`` ASCII digits (unbounded for ``None``), as chrono's scanner does."""
    if not text:
        raise DateParseError(TOO_SHORT)
    end = 0
    limit = len(text) if max_digits is None else min(max_digits, len(text))
    while end < limit and text[end] in _DIGITS:
        end += 1
        # chrono accumulates into an i64 and stops with OUT_OF_RANGE on overflow;
        # checking the length first also keeps int() away from huge digit strings.
        if end > 19 or (end == 19 and int(text[:end]) > _I64_MAX):
            raise DateParseError(OUT_OF_RANGE)
    if end == 0:
        raise DateParseError(INVALID)
    return int(text[:end]), text[end:]


def _dash(text: str) -> str:
    if not text:
        raise DateParseError(TOO_SHORT)
    if not text.startswith("-"):
        raise DateParseError(INVALID)
    return text[1:]


def _year(text: str) -> tuple[int, str]:
    if text.startswith("-"):
        value, rest = _number(text[1:], None)
        value = -value
    elif text.startswith("+"):
        value, rest = _number(text[1:], None)
    else:
        value, rest = _number(text, 4)
    if value not in _I32:
        raise DateParseError(OUT_OF_RANGE)
    return value, rest


def parse_iso_date(text: str) -> datetime.date:
    """Parse ``YYYY-MM-DD`` (calendar-checked); raise :class:`DateParseError`.

    Years outside 1..9999 are reported as out of range: Python's dates stop there,
    while chrono would accept years such as 0 or 12345.
    """
    year, rest = _year(text)
    rest = _dash(rest)
    month, rest = _number(rest, 2)
    if not 1 <= month <= 12:
        raise DateParseError(OUT_OF_RANGE)
    rest = _dash(rest)
    day, rest = _number(rest, 2)
    if not 1 <= day <= 31:
        raise DateParseError(OUT_OF_RANGE)
    if rest:
        raise DateParseError(TOO_LONG)
    try:
        return datetime.date(year, month, day)
    except ValueError:
        raise DateParseError(OUT_OF_RANGE) from None


def whole_years(since: datetime.datetime, now: datetime.datetime) -> int:
    """Whole years from ``since`` to ``now``, never negative.

    As upstream: ``now`` is taken in ``since``'s offset, the years are subtracted and one
    is taken off if ``(month, day, time of day)`` of ``now`` comes before that of ``since``.
    A birthday on 29 February is therefore reached on 1 March in common years.
    """
    offset = since.tzinfo or datetime.UTC
    since = since.replace(tzinfo=offset)
    local_now = now.astimezone(offset)
    years = local_now.year - since.year
    if (local_now.month, local_now.day, local_now.time()) < (since.month, since.day, since.time()):
        years -= 1
    return max(years, 0)
