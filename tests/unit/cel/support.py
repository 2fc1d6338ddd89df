"""Helpers shared by the CEL engine's unit tests."""

from __future__ import annotations

import datetime

from vault.enclave.cel import CelEngine

# A fixed "now" for date-dependent checks that must not depend on the day the tests run.
FIXED_NOW = datetime.datetime(2024, 6, 15, 12, 30, 0, tzinfo=datetime.UTC)


def evaluate_one(engine: CelEngine, expression: str, fields: dict[str, str | None] | None = None) -> object:
    """Evaluate one expression and return its output, failing on an error entry."""
    result = engine.evaluate(fields or {}, {"out": expression})
    assert result.errors == [], result.errors
    return result.values["out"]


def error_of(engine: CelEngine, expression: str, fields: dict[str, str | None] | None = None) -> str:
    """Evaluate one failing expression and return its error entry (its value must be None)."""
    result = engine.evaluate(fields or {}, {"out": expression})
    assert result.values["out"] is None
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def years_since(birth: datetime.date, today: datetime.date) -> int:
    """Reference age: count the birthdays (anniversaries) that have passed by ``today``."""
    return sum(
        1
        for year in range(birth.year + 1, today.year + 1)
        if (year, birth.month, birth.day) <= (today.year, today.month, today.day)
    )
