"""CEL's comparison, membership and integer division operators, as the upstream interpreter has them.

cel-python compares only values of one type: ``1 == 1.0``, ``1u == 1`` and so
``date(dob).age() == 40`` (``age`` is a uint) fail with "no such overload", and its
``true == 1`` is true because its bool is a Python int. The upstream enclave's
interpreter (Rust ``cel``) instead:

* compares int, uint and double with each other by value, for ``==``, ``!=``, ``<``,
  ``<=``, ``>`` and ``>=``; when one side is a double both are compared as doubles
  (Rust's ``as f64``, so integers beyond 2^53 are rounded first), otherwise exactly;
* answers ``==`` for values of different types with ``false`` (heterogeneous
  equality), compares lists element by element and maps key by key with the same
  rule, and keeps map keys of different types apart (``{1: x} != {1u: x}``);
* orders only numbers, strings, bytes, bools, timestamps and durations, and refuses
  an ordering with NaN ("no such overload");
* treats ``in`` as ``==`` over a list's items, and as a lookup of keys of the same
  type over a map's keys;
* accepts only bools (or errors, absorbed when the other side decides) for ``||``
  and ``&&``.

Each operator is registered in the function table under cel-python's operator name.
A ``TypeError`` raised here is turned by cel-python into "no such overload" for the
operator; an error value received as an operand is handed back unchanged.

``+`` keeps concatenated strings, bytes and lists CEL values.
``-9223372036854775808 / -1`` and ``% -1`` overflow int64: an overflow error, as in
the CEL spec and upstream (cel-python answers 0 for ``%``).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, cast

import celpy.celtypes as ct
from celpy.evaluation import CELEvalError, NameContainer, Result

_INT64_MIN: Final = -(2**63)

# Kinds of CEL value, as far as comparing them is concerned.
_NULL: Final = "null"
_BOOL: Final = "bool"
_INT: Final = "int"
_UINT: Final = "uint"
_DOUBLE: Final = "double"
_STRING: Final = "string"
_BYTES: Final = "bytes"
_TIMESTAMP: Final = "timestamp"
_DURATION: Final = "duration"
_LIST: Final = "list"
_MAP: Final = "map"
_TYPE: Final = "type"
_OTHER: Final = "other"

NUMERIC_KINDS: Final = frozenset({_INT, _UINT, _DOUBLE})
_ORDERED: Final = frozenset({_BOOL, _STRING, _BYTES, _TIMESTAMP, _DURATION})
_KEY_KINDS: Final = frozenset({_BOOL, _INT, _UINT, _STRING})

# Exact classes first (one dict lookup for the common case), then the isinstance chain.
_EXACT_KINDS: Final[Mapping[type, str]] = {
    type(None): _NULL,
    ct.BoolType: _BOOL,
    bool: _BOOL,
    ct.IntType: _INT,
    int: _INT,
    ct.UintType: _UINT,
    ct.DoubleType: _DOUBLE,
    float: _DOUBLE,
    ct.StringType: _STRING,
    str: _STRING,
    ct.BytesType: _BYTES,
    bytes: _BYTES,
    ct.TimestampType: _TIMESTAMP,
    ct.DurationType: _DURATION,
    ct.ListType: _LIST,
    list: _LIST,
    ct.MapType: _MAP,
    dict: _MAP,
}


def kind_of(value: object) -> str:
    """The comparison kind of ``value`` (bool is not a number here, whatever Python thinks)."""
    kind = _EXACT_KINDS.get(type(value))
    if kind is not None:
        return kind
    if isinstance(value, (bool, ct.BoolType)):
        return _BOOL
    if isinstance(value, ct.UintType):
        return _UINT
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _DOUBLE
    if isinstance(value, str):
        return _STRING
    if isinstance(value, bytes):
        return _BYTES
    if isinstance(value, datetime.datetime):
        return _TIMESTAMP
    if isinstance(value, datetime.timedelta):
        return _DURATION
    if isinstance(value, list):
        return _LIST
    if isinstance(value, dict) and not isinstance(value, NameContainer):
        return _MAP
    if isinstance(value, type):
        return _TYPE
    return _OTHER


def _key_identity(key: Any, kind: str) -> tuple[str, object]:
    """A hashable identity for a map key that keeps ``1``, ``1u`` and ``true`` apart."""
    if kind == _STRING:
        return kind, str(key)
    if kind == _BOOL:
        return kind, bool(key)
    return kind, int(key)


def equal(left: Any, right: Any) -> bool:
    """CEL ``==`` between two non-error values; never raises."""
    left_kind = kind_of(left)
    right_kind = kind_of(right)
    if left_kind in NUMERIC_KINDS and right_kind in NUMERIC_KINDS:
        if left_kind == _DOUBLE or right_kind == _DOUBLE:
            return float(left) == float(right)
        return int(left) == int(right)
    if left_kind != right_kind:
        return False
    if left_kind == _NULL:
        return True
    if left_kind == _BOOL:
        return bool(left) == bool(right)
    if left_kind == _LIST:
        assert isinstance(left, list) and isinstance(right, list)
        return len(left) == len(right) and all(equal(a, b) for a, b in zip(left, right, strict=True))
    if left_kind == _MAP:
        assert isinstance(left, dict) and isinstance(right, dict)
        return _maps_equal(left, right)
    if left_kind == _TYPE:
        return left is right
    if left_kind == _OTHER:
        try:
            return bool(left == right)
        except TypeError:
            return False
    # Strings, bytes, timestamps, durations: Python's own equality of the base types.
    return bool(left == right)


def _maps_equal(left: dict[Any, Any], right: dict[Any, Any]) -> bool:
    if len(left) != len(right):
        return False
    missing = object()
    index = {_key_identity(key, kind_of(key)): value for key, value in right.items()}
    for key, value in left.items():
        other = index.get(_key_identity(key, kind_of(key)), missing)
        if other is missing or not equal(value, other):
            return False
    return True


def compare(left: Any, right: Any) -> int:
    """-1, 0 or 1 for CEL's ordering of two non-error values; ``TypeError`` if they have none."""
    left_kind = kind_of(left)
    right_kind = kind_of(right)
    if left_kind in NUMERIC_KINDS and right_kind in NUMERIC_KINDS:
        if left_kind == _DOUBLE or right_kind == _DOUBLE:
            a: float | int = float(left)
            b: float | int = float(right)
            if math.isnan(a) or math.isnan(b):
                raise TypeError("no such overload")
        else:
            a, b = int(left), int(right)
        return (a > b) - (a < b)
    if left_kind != right_kind or left_kind not in _ORDERED:
        raise TypeError("no such overload")
    if left_kind == _BOOL:
        x, y = bool(left), bool(right)
        return (x > y) - (x < y)
    return int(left > right) - int(left < right)


def contains(item: Any, container: Any) -> bool:
    """CEL ``item in container`` for non-error values; ``TypeError`` for other containers."""
    if isinstance(container, list):
        return any(equal(item, candidate) for candidate in container)
    if isinstance(container, dict) and not isinstance(container, NameContainer):
        item_kind = kind_of(item)
        if item_kind not in _KEY_KINDS:
            raise TypeError("unsupported key type")
        wanted = _key_identity(item, item_kind)
        return any(_key_identity(key, kind_of(key)) == wanted for key in container)
    raise TypeError("no such overload")


def _relation(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Result]:
    def operator(left: Any, right: Any) -> Result:
        if isinstance(left, CELEvalError):
            return left
        if isinstance(right, CELEvalError):
            return right
        return ct.BoolType(test(left, right))

    return operator


def _logical(decisive: bool) -> Callable[[Any, Any], Result]:
    """CEL's ``||`` (``decisive`` true) or ``&&`` (false): commutative, errors absorbed by a decisive side.

    cel-python hands back the other operand whatever its type (``false || 1`` is 1,
    ``false || null`` is null); CEL and upstream have no such overload.
    """

    def operator(left: Any, right: Any) -> Result:
        left_bool = kind_of(left) == _BOOL
        right_bool = kind_of(right) == _BOOL
        if (left_bool and bool(left) is decisive) or (right_bool and bool(right) is decisive):
            return ct.BoolType(decisive)
        if left_bool and right_bool:
            return ct.BoolType(not decisive)
        for operand in (left, right):
            if isinstance(operand, CELEvalError):
                return operand
        raise TypeError("no such overload")

    return operator


def _int64_checked(operation: Callable[[Any, Any], Result]) -> Callable[[Any, Any], Result]:
    def operator(left: Any, right: Any) -> Result:
        if kind_of(left) == _INT and kind_of(right) == _INT and int(left) == _INT64_MIN and int(right) == -1:
            # cel-python reports ValueError/OverflowError of an operator as an overflow error.
            raise OverflowError("int64 overflow")
        return operation(left, right)

    return operator


def _add(left: Any, right: Any) -> Result:
    """``+``; concatenations stay CEL values (Python's ``str.__add__`` would give a plain ``str``,
    which then lacks ``contains``)."""
    result = left + right
    result_type = type(result)
    if result_type is str:
        return ct.StringType(result)
    if result_type is bytes:
        return ct.BytesType(result)
    if result_type is list:
        return ct.ListType(result)
    return cast(Result, result)


def _divide(left: Any, right: Any) -> Result:
    return cast(Result, left / right)


def _modulo(left: Any, right: Any) -> Result:
    return cast(Result, left % right)


OPERATORS: Final[Mapping[str, Callable[[Any, Any], Result]]] = {
    "_==_": _relation(equal),
    "_!=_": _relation(lambda left, right: not equal(left, right)),
    "_<_": _relation(lambda left, right: compare(left, right) < 0),
    "_<=_": _relation(lambda left, right: compare(left, right) <= 0),
    "_>_": _relation(lambda left, right: compare(left, right) > 0),
    "_>=_": _relation(lambda left, right: compare(left, right) >= 0),
    "_in_": _relation(contains),
    "_||_": _logical(True),
    "_&&_": _logical(False),
    "_+_": _add,
    "_/_": _int64_checked(_divide),
    "_%_": _int64_checked(_modulo),
}
