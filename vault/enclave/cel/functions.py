"""The vault's CEL function library (spec 6.2) and the standard functions cel-python lacks.

Every function is registered once by name; cel-python resolves both ``x.f()`` and
``f(x)`` to it, with the receiver as first argument. A function never raises for bad
input: it returns a :class:`CelFunctionError` value whose text names the function and
the rule that failed, never the argument (arguments are decrypted PII).

Beyond upstream's table:

* ``max``/``min`` (upstream's cel-interpreter has them, cel-python does not), with
  upstream's rules: ``max(list)`` ranges over the list, ``max(a, b, ...)`` over the
  arguments, a single non-list argument is returned as is, nothing gives ``null``.
  ``list.min()`` is cel-python's own list macro and errors on an empty list.
* ``substring(start[, end])`` with the semantics of cel-go's strings extension
  (code-point indices, ``0 <= start <= end <= size``), so that masks such as
  ``"***-**-" + ssn.substring(size(ssn) - 4)`` can be written.
* ``_[_]`` refuses strings and negative list indices, which Python indexing would allow.
* the timestamp accessors (``getFullYear`` ... ``getMilliseconds``) without a time zone
  argument read the timestamp in its own offset, as upstream does; cel-python would
  use the host's local time zone.
* the masking functions ``mask``, ``email_domain``, ``year`` and ``bucket``
  (:mod:`vault.enclave.cel.masking`).
* ``hmac_sha256(value, field)``: the blind-index token search stores for ``value`` in the
  searchable ``field`` (:mod:`vault.enclave.blind_index`), with the index key the API
  adds to a decrypt that uses it; without one it is an error.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import celpy.celtypes as ct
import re2
from celpy.evaluation import (
    CELFunction,
    NameContainer,
    Result,
    function_getDate,
    function_getDayOfMonth,
    function_getDayOfWeek,
    function_getDayOfYear,
    function_getFullYear,
    function_getHours,
    function_getMilliseconds,
    function_getMinutes,
    function_getMonth,
    function_getSeconds,
)

from vault.common.blind_index import SEARCHABLE_FIELDS
from vault.enclave.blind_index import current_index_key
from vault.enclave.cel.convert import duration_nanoseconds, rfc3339
from vault.enclave.cel.dates import DateParseError, parse_iso_date, whole_years
from vault.enclave.cel.errors import CelFunctionError, type_name
from vault.enclave.cel.masking import MASKING_FUNCTIONS, MaskingRefused
from vault.enclave.cel.operators import NUMERIC_KINDS, OPERATORS, compare, kind_of

Clock = Callable[[], datetime.datetime]

_LOWER_HEX = frozenset("0123456789abcdef")


class _Refused(Exception):
    """Raised inside a function body; becomes a :class:`CelFunctionError` value."""


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Refused(f"expected a string argument, got {type_name(value)}")
    return value


def _utf8(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # Only reachable with lone surrogates, which JSON can carry but UTF-8 cannot.
        raise _Refused("string is not valid Unicode") from None


def _text(raw: bytes) -> ct.StringType:
    try:
        return ct.StringType(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Refused("decoded bytes are not valid UTF-8") from None


def _integer(value: object) -> int:
    if isinstance(value, (bool, ct.BoolType)) or not isinstance(value, int):
        raise _Refused(f"expected an int argument, got {type_name(value)}")
    return value


def _timestamp(value: object) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise _Refused(f"expected a timestamp argument, got {type_name(value)}")
    return value


def _function(name: str, body: Callable[..., Result]) -> CELFunction:
    """Wrap ``body`` so that a refusal becomes an error value naming ``name``."""

    def call(*args: Any) -> Result:
        try:
            return body(*args)
        except (_Refused, MaskingRefused) as refusal:
            return CelFunctionError(name, str(refusal))

    call.__name__ = name
    return call


def _is_empty(value: object) -> Result:
    return ct.BoolType(len(_string(value)) == 0)


def _to_lowercase(value: object) -> Result:
    return ct.StringType(_string(value).lower())


def _to_uppercase(value: object) -> Result:
    return ct.StringType(_string(value).upper())


def _digest(algorithm: str) -> Callable[[object], Result]:
    def digest(value: object) -> Result:
        return ct.StringType(hashlib.new(algorithm, _utf8(_string(value))).hexdigest())

    return digest


def _hmac_sha256(value: object, field_name: object) -> Result:
    """The blind-index token of ``value`` in the searchable field ``field_name``: what search stores."""
    name = _string(field_name)
    if name not in SEARCHABLE_FIELDS:
        raise _Refused(f"the second argument must be a searchable field: {', '.join(SEARCHABLE_FIELDS)}")
    text = _string(value)
    _utf8(text)
    key = current_index_key.get()
    if key is None:
        raise _Refused("the request carries no index key (the deployment does not index fields)")
    return ct.StringType(key.token(name, text))


def _hex_encode(value: object) -> Result:
    return ct.StringType(_utf8(_string(value)).hex())


def _hex_decode(value: object) -> Result:
    text = _string(value)
    if len(text) % 2:
        raise _Refused("odd number of hex digits")
    if not _LOWER_HEX.issuperset(text):
        raise _Refused("invalid character in hex string (lowercase hex digits only)")
    return _text(bytes.fromhex(text))


def _base64_encode(value: object) -> Result:
    return ct.StringType(base64.b64encode(_utf8(_string(value))).decode("ascii"))


def _base64_decode(value: object) -> Result:
    text = _string(value)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Refused("invalid base64 (standard alphabet, padding required)") from None
    # Re-encoding rejects what a strict decoder rejects and b64decode lets through:
    # missing padding and non-zero trailing bits.
    if base64.b64encode(raw).decode("ascii") != text:
        raise _Refused("invalid base64 (standard alphabet, padding required)")
    return _text(raw)


def _date(value: object) -> Result:
    try:
        day = parse_iso_date(_string(value))
    except DateParseError as exc:
        raise _Refused(str(exc)) from None
    return ct.TimestampType(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC))


def _substring(value: object, start: object, end: object | None = None) -> Result:
    text = _string(value)
    first = _integer(start)
    last = len(text) if end is None else _integer(end)
    if not 0 <= first <= len(text) or not 0 <= last <= len(text):
        raise _Refused("index out of range")
    if last < first:
        raise _Refused("invalid substring range (end before start)")
    return ct.StringType(text[first:last])


#: RE2 writes a pattern it cannot parse to stderr by default; a pattern may be a field's
#: value, so nothing of it may reach the enclave's log.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _matches(value: object, pattern: object) -> Result:
    """``matches`` (RE2, as cel-python's), with errors that quote neither text nor pattern."""
    try:
        compiled = re2.compile(_string(pattern), _RE2_OPTIONS)
    except re2.error:
        raise _Refused("invalid regular expression") from None
    return ct.BoolType(compiled.search(_string(value)) is not None)


def _size(value: object) -> Result:
    """``size``: code points of a string (the CEL spec), bytes, list items or map entries.

    cel-python would also answer 0 for ``null``; CEL and upstream have no such overload.
    """
    if isinstance(value, (str, bytes, list)) or (
        isinstance(value, dict) and not isinstance(value, NameContainer)
    ):
        return ct.IntType(len(value))
    raise TypeError("no such overload")


def _fraction(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    digits = f"{part:0{len(str(unit)) - 1}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def _duration_text(span: datetime.timedelta) -> str:
    """Go's (and upstream's) duration format: ``1h30m0s``, ``1.5s``, ``1ms``, ``0s``."""
    nanoseconds = duration_nanoseconds(span)
    sign = "-" if nanoseconds < 0 else ""
    nanoseconds = abs(nanoseconds)
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 1_000:
        return f"{sign}{nanoseconds}ns"
    if nanoseconds < 1_000_000:
        return f"{sign}{_fraction(nanoseconds, 1_000)}µs"
    if nanoseconds < 1_000_000_000:
        return f"{sign}{_fraction(nanoseconds, 1_000_000)}ms"
    hours, rest = divmod(nanoseconds, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = f"{_fraction(rest, 1_000_000_000)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return f"{sign}{seconds}"


def _double_text(value: float) -> str:
    """Rust's ``f64`` display, as upstream formats doubles: shortest round trip, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = format(decimal.Decimal(float.__repr__(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _to_string(value: object) -> Result:
    """CEL's ``string()`` conversion.

    cel-python would turn ``true`` into ``"True"``, ``null`` into ``"None"`` and any
    other value into its Python text. Here, as upstream: strings as they are, ints and
    uints in decimal, doubles and durations in upstream's formats, timestamps in RFC 3339
    (as in JSON output); bools as ``"true"``/``"false"`` (the CEL spec; upstream has no
    such overload); bytes must be UTF-8 (the CEL spec; upstream substitutes U+FFFD).
    Anything else (null, lists, maps, types) has no string conversion.
    """
    kind = kind_of(value)
    if kind == "string":
        return ct.StringType(cast(str, value))
    if kind == "bool":
        return ct.StringType("true" if value else "false")
    if kind in ("int", "uint"):
        return ct.StringType(str(int(cast(int, value))))
    if kind == "double":
        return ct.StringType(_double_text(cast(float, value)))
    if kind == "bytes":
        return _text(bytes(cast(bytes, value)))
    if kind == "timestamp":
        return ct.StringType(rfc3339(cast(datetime.datetime, value)))
    if kind == "duration":
        return ct.StringType(_duration_text(cast(datetime.timedelta, value)))
    raise TypeError("no such overload")


def _index(container: object, key: object) -> Result:
    """CEL's ``_[_]``: lists by non-negative int/uint, maps by key.

    cel-python hands ``_[_]`` to Python's indexing, which would also index strings and
    count negative list indices from the end; CEL does neither. The exceptions are the
    ones cel-python turns into "no such overload" / "invalid argument" / "no such key".
    """
    if isinstance(container, list):
        if isinstance(key, ct.BoolType) or not isinstance(key, int):
            raise TypeError("list index must be an int")
        if not 0 <= key < len(container):
            raise IndexError("list index out of range")
        return cast(Result, container[key])
    if isinstance(container, dict):
        return cast(Result, container[key])
    raise TypeError("value does not support indexing")


def _extreme(keep_current: Callable[[int], bool]) -> Callable[..., Result]:
    """cel-interpreter's fold: keep the running value while ``keep_current(compare(best, item))``,
    else take the next (so of equal values the last wins).

    Values are ordered as by the ``<`` operator (numbers across int, uint and double).
    """

    def pick(*args: Result) -> Result:
        items: Sequence[Result] = args
        if len(args) == 1:
            if not isinstance(args[0], list):
                return args[0]
            items = args[0]
        if not items:
            return None
        best = items[0]
        for item in items[1:]:
            try:
                order = compare(best, item)
            except TypeError:
                if {kind_of(best), kind_of(item)} <= NUMERIC_KINDS:
                    raise _Refused("values are not comparable") from None  # NaN
                raise _Refused(
                    f"values of type {type_name(best)} and {type_name(item)} are not comparable"
                ) from None
            if not keep_current(order):
                best = item
        return best

    return pick


def _timestamp_accessor(
    field: Callable[[datetime.datetime], int], fallback: CELFunction
) -> Callable[..., Result]:
    def accessor(value: object, tz_name: object | None = None) -> Result:
        if not isinstance(value, ct.TimestampType):
            # Durations and anything else: cel-python's own behaviour.
            return fallback(value) if tz_name is None else fallback(value, tz_name)
        moment: datetime.datetime = value
        if tz_name is not None:
            try:
                moment = value.astimezone(ct.TimestampType.tz_parse(_string(tz_name)))
            except ValueError:
                raise _Refused("unknown time zone") from None
        return ct.IntType(field(moment))

    return accessor


_ACCESSORS: dict[str, tuple[Callable[[datetime.datetime], int], CELFunction]] = {
    "getFullYear": (lambda t: t.year, function_getFullYear),
    "getMonth": (lambda t: t.month - 1, function_getMonth),
    "getDate": (lambda t: t.day, function_getDate),
    "getDayOfMonth": (lambda t: t.day - 1, function_getDayOfMonth),
    "getDayOfWeek": (lambda t: t.isoweekday() % 7, function_getDayOfWeek),
    "getDayOfYear": (lambda t: t.timetuple().tm_yday - 1, function_getDayOfYear),
    "getHours": (lambda t: t.hour, function_getHours),
    "getMinutes": (lambda t: t.minute, function_getMinutes),
    "getSeconds": (lambda t: t.second, function_getSeconds),
    "getMilliseconds": (lambda t: t.microsecond // 1000, function_getMilliseconds),
}


def vault_functions(clock: Clock) -> Mapping[str, CELFunction]:
    """The function table handed to cel-python; ``clock`` returns the current aware time."""

    def today_utc() -> Result:
        now = clock().astimezone(datetime.UTC)
        return ct.TimestampType(datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.UTC))

    def age(value: object) -> Result:
        return ct.UintType(whole_years(_timestamp(value), clock()))

    bodies: dict[str, Callable[..., Result]] = {
        "is_empty": _is_empty,
        "to_lowercase": _to_lowercase,
        "to_uppercase": _to_uppercase,
        "sha256": _digest("sha256"),
        "sha384": _digest("sha384"),
        "sha512": _digest("sha512"),
        "hmac_sha256": _hmac_sha256,
        "hex_encode": _hex_encode,
        "hex_decode": _hex_decode,
        "base64_encode": _base64_encode,
        "base64_decode": _base64_decode,
        "date": _date,
        "today_utc": today_utc,
        "age": age,
        "substring": _substring,
        "_[_]": _index,
        "size": _size,
        "matches": _matches,
        "string": _to_string,
        "max": _extreme(lambda order: order > 0),
        "min": _extreme(lambda order: order < 0),
    }
    bodies.update(MASKING_FUNCTIONS)
    for name, (field, fallback) in _ACCESSORS.items():
        bodies[name] = _timestamp_accessor(field, fallback)
    table: dict[str, CELFunction] = {name: _function(name, body) for name, body in bodies.items()}
    # Operators are not wrapped: cel-python reports their TypeErrors as "no such overload".
    table.update(OPERATORS)
    return table
