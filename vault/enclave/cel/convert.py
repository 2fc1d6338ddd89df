"""CEL result → JSON value, exactly as spec 6.1 lists it.

string → string; int/uint → number; double → number; bool; null; list → array;
map → object with keys stringified; bytes → base64 (standard, padded); timestamp →
RFC 3339 with a numeric offset (``+00:00``, never ``Z``) and chrono's fraction style;
duration → integer nanoseconds. Anything else — a type, a non-finite double, a map key
that is not a string, int or bool — is unconvertible, which fails that one expression.
"""

from __future__ import annotations

import base64
import datetime
import math
from typing import Any

import celpy.celtypes as ct
from celpy.evaluation import NameContainer

from vault.enclave.cel.errors import type_name
from vault.enclave.cel.limits import ENTRY_UNITS, CelLimits, LimitExceeded


class Unconvertible(Exception):
    """The value has no JSON form; the message names its type only."""


def rfc3339(moment: datetime.datetime) -> str:
    """Format like chrono's ``to_rfc3339``: fraction only when non-zero, in 3 or 6 digits."""
    offset = moment.utcoffset() or datetime.timedelta(0)
    micro = moment.microsecond
    if micro == 0:
        fraction = ""
    elif micro % 1000 == 0:
        fraction = f".{micro // 1000:03d}"
    else:
        fraction = f".{micro:06d}"
    sign = "-" if offset < datetime.timedelta(0) else "+"
    minutes = abs(offset) // datetime.timedelta(minutes=1)
    # strftime's %Y does not zero-pad years below 1000 on every platform; format by hand.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}{fraction}"
        f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    )


def duration_nanoseconds(span: datetime.timedelta) -> int:
    return ((span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds) * 1000


def _key(key: object) -> str:
    if isinstance(key, (bool, ct.BoolType)):
        return "true" if key else "false"
    if isinstance(key, str):
        return str(key)
    if isinstance(key, int):
        return str(int(key))
    raise Unconvertible(f"map key of type {type_name(key)} cannot be converted to JSON")


class JsonConverter:
    """Converts results, counting their size against ``limits.max_output_size`` across calls."""

    def __init__(self, limits: CelLimits) -> None:
        self._limits = limits
        self._left = limits.max_output_size

    def convert(self, value: object) -> Any:
        """The JSON form of ``value``; raises :class:`Unconvertible` or :class:`LimitExceeded`."""
        return self._convert(value, 0)

    def _spend(self, units: int) -> None:
        self._left -= units
        if self._left < 0:
            raise LimitExceeded(f"output size limit exceeded ({self._limits.max_output_size} units)")

    def _convert(self, value: object, depth: int) -> Any:
        if depth > self._limits.max_value_depth:
            raise LimitExceeded(f"value nesting limit exceeded ({self._limits.max_value_depth} levels)")
        self._spend(1)
        # bool before int: cel-python's BoolType is an int subclass.
        if value is None:
            return None
        if isinstance(value, (bool, ct.BoolType)):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise Unconvertible("a non-finite double cannot be converted to JSON")
            return float(value)
        if isinstance(value, str):
            self._spend(len(value))
            return str(value)
        if isinstance(value, bytes):
            self._spend(len(value))
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, datetime.datetime):
            return rfc3339(value)
        if isinstance(value, datetime.timedelta):
            return duration_nanoseconds(value)
        if isinstance(value, list):
            self._spend(len(value) * ENTRY_UNITS)
            return [self._convert(item, depth + 1) for item in value]
        if isinstance(value, dict) and not isinstance(value, NameContainer):
            self._spend(len(value) * ENTRY_UNITS)
            return {_key(key): self._convert(item, depth + 1) for key, item in value.items()}
        raise Unconvertible(f"a value of type {type_name(value)} cannot be converted to JSON")
