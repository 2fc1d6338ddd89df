"""A reference for the vault's CEL: the Rust ``cel`` interpreter (``common-expression-language``).

The upstream enclave evaluates expressions with Rust ``cel`` (cel-interpreter); the
``common-expression-language`` package binds its successor. :class:`ReferenceEngine`
runs a request's expressions on it as the vault does (request order, each expression
sees the fields and the earlier outputs, a failure gives ``None``), with the vault's
function library (spec 6.2) written afresh here from the spec, not taken from the
project's code.

:data:`KNOWN_DIFFERENCES` is the one list of the deliberate differences between the
project's engine and this reference (the README's CEL section explains them to users);
a differential test fails on any difference that no entry explains.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import cel

FIXED_NOW = datetime.datetime(2024, 6, 15, 12, 30, 0, tzinfo=datetime.UTC)
_DATE = re.compile(r"^(\d{1,4})-(\d{1,2})-(\d{1,2})$")


class ReferenceFunctionError(Exception):
    """A spec 6.2 function refused its argument."""


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ReferenceFunctionError("expected a string")
    return value


def _decoded(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReferenceFunctionError("not UTF-8") from None


def _hex_decode(value: object) -> str:
    text = _text(value)
    if len(text) % 2 or not set(text) <= set("0123456789abcdef"):
        raise ReferenceFunctionError("bad hex")
    return _decoded(bytes.fromhex(text))


def _base64_decode(value: object) -> str:
    text = _text(value)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReferenceFunctionError("bad base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ReferenceFunctionError("bad base64")
    return _decoded(raw)


def _date(value: object) -> datetime.datetime:
    found = _DATE.match(_text(value))
    if found is None:
        raise ReferenceFunctionError("bad date")
    year, month, day = (int(part) for part in found.groups())
    try:
        return datetime.datetime(year, month, day, tzinfo=datetime.UTC)
    except ValueError:
        raise ReferenceFunctionError("bad date") from None


def _age(value: object) -> int:
    if not isinstance(value, datetime.datetime):
        raise ReferenceFunctionError("expected a timestamp")
    now = FIXED_NOW.astimezone(value.tzinfo)
    years = now.year - value.year
    if (now.month, now.day, now.time()) < (value.month, value.day, value.time()):
        years -= 1
    return max(years, 0)


def _digest(name: str) -> Callable[[object], str]:
    return lambda value: hashlib.new(name, _text(value).encode("utf-8")).hexdigest()


def _whole(value: object) -> int:
    # The package hands ints and uints over as Python ints, bools as bools.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ReferenceFunctionError("expected an int")
    return value


def _mask(value: object, keep_last: object) -> str:
    text, keep = _text(value), _whole(keep_last)
    if keep < 0:
        raise ReferenceFunctionError("negative keep_last")
    shown = text[len(text) - keep :] if keep < len(text) else ""
    return "*" * (len(text) - len(shown)) + shown


def _email_domain(value: object) -> str:
    text = _text(value)
    if "@" not in text or text.endswith("@"):
        raise ReferenceFunctionError("no domain")
    return text.split("@")[-1].lower()


def _year(value: object) -> int:
    if isinstance(value, datetime.datetime):
        return value.year
    return _date(value).year


def _bucket(number: object, size: object) -> int | float:
    if isinstance(number, float) or isinstance(size, float):
        pair = (number, size)
        if any(isinstance(item, bool) or not isinstance(item, (int, float)) for item in pair):
            raise ReferenceFunctionError("expected numbers")
        low, step = float(cast(float, number)), float(cast(float, size))
        if not (math.isfinite(low) and math.isfinite(step)) or step <= 0:
            raise ReferenceFunctionError("bad size or number")
        quotient = low / step
        if not math.isfinite(quotient) or not math.isfinite(math.floor(quotient) * step):
            raise ReferenceFunctionError("out of range")
        return float(math.floor(quotient) * step)
    whole, step = _whole(number), _whole(size)
    if step <= 0:
        raise ReferenceFunctionError("bad size")
    result = whole - whole % step
    if not -(2**63) <= result < 2**64:
        raise ReferenceFunctionError("out of range")
    return result


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "is_empty": lambda value: len(_text(value)) == 0,
    "to_lowercase": lambda value: _text(value).lower(),
    "to_uppercase": lambda value: _text(value).upper(),
    "sha256": _digest("sha256"),
    "sha384": _digest("sha384"),
    "sha512": _digest("sha512"),
    "hex_encode": lambda value: _text(value).encode("utf-8").hex(),
    "hex_decode": _hex_decode,
    "base64_encode": lambda value: base64.b64encode(_text(value).encode("utf-8")).decode("ascii"),
    "base64_decode": _base64_decode,
    "date": _date,
    "today_utc": lambda: datetime.datetime(
        FIXED_NOW.year, FIXED_NOW.month, FIXED_NOW.day, tzinfo=datetime.UTC
    ),
    "age": _age,
    "mask": _mask,
    "email_domain": _email_domain,
    "year": _year,
    "bucket": _bucket,
}


@dataclass(frozen=True)
class Outcome:
    """One expression's result: ``ok`` with a JSON-like ``value``, or a failure."""

    ok: bool
    value: object = None


class ReferenceEngine:
    """Evaluates a request's expressions on Rust ``cel`` the way the vault's engine does."""

    def evaluate(
        self, fields: Mapping[str, str | None], expressions: Mapping[str, str]
    ) -> dict[str, Outcome]:
        scope: dict[str, object] = dict(fields)
        outcomes: dict[str, Outcome] = {}
        for name, text in expressions.items():
            context = cel.Context(variables=dict(scope), functions=dict(FUNCTIONS))
            try:
                value = cel.evaluate(text, context)
            except Exception:
                outcomes[name] = Outcome(ok=False)
                scope[name] = None
                continue
            outcomes[name] = Outcome(ok=True, value=value)
            scope[name] = value
        return outcomes


@dataclass(frozen=True)
class KnownDifference:
    """A documented difference: when ``applies`` says it may explain a disagreement, and why it is kept."""

    name: str
    reason: str
    applies: Callable[[str, Mapping[str, object], str | None], bool]


def _non_ascii(expression: str, scope: Mapping[str, object]) -> bool:
    texts = [expression, *(value for value in scope.values() if isinstance(value, str))]
    return any(not text.isascii() for text in texts)


def _calls(*names: str) -> Callable[[str, Mapping[str, object], str | None], bool]:
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\s*\(")
    return lambda expression, scope, error: pattern.search(expression) is not None


KNOWN_DIFFERENCES: tuple[KnownDifference, ...] = (
    KnownDifference(
        "size-counts-code-points",
        "size() of a string counts Unicode code points, as the CEL spec says; upstream counts UTF-8 bytes",
        lambda expression, scope, error: "size" in expression and _non_ascii(expression, scope),
    ),
    KnownDifference(
        "substring",
        "the vault adds substring() (cel-go's strings extension) for masks; upstream has none",
        _calls("substring"),
    ),
    KnownDifference(
        "max-min",
        "the vault has max()/min() as upstream's cel-interpreter 0.10 does; "
        "the package's interpreter lacks them",
        _calls("max", "min"),
    ),
    KnownDifference(
        "matches",
        "matches() exists here (cel-python, RE2) and in the package, "
        "but not in the upstream enclave (no regex feature)",
        _calls("matches"),
    ),
    KnownDifference(
        "int-negation-overflow",
        "-(-9223372036854775808) is an overflow error here, as the CEL spec says; "
        "Rust cel wraps to the minimum",
        lambda expression, scope, error: "9223372036854775808" in expression,
    ),
    KnownDifference(
        "string-of-bool-and-bytes",
        "string(true) is 'true' and string() of invalid UTF-8 bytes an error, as the CEL spec says; "
        "upstream has no string(bool) and substitutes U+FFFD",
        _calls("string"),
    ),
    KnownDifference(
        "microsecond-resolution",
        "durations and timestamps hold microseconds here (Python's datetime), nanoseconds upstream",
        _calls("duration", "timestamp"),
    ),
    KnownDifference(
        "limits",
        "the vault bounds steps, time, value size and nesting per expression; the reference has no limits",
        lambda expression, scope, error: (
            error is not None and ("limit exceeded" in error or "nested too deeply" in error)
        ),
    ),
)


def explain(expression: str, scope: Mapping[str, object], error: str | None) -> KnownDifference | None:
    """The documented difference that may explain a disagreement on ``expression``, if any."""
    for difference in KNOWN_DIFFERENCES:
        if difference.applies(expression, scope, error):
            return difference
    return None
