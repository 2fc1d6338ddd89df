"""Masking functions for the common formats: ``mask``, ``email_domain``, ``year``, ``bucket``.

Each reduces a decrypted value to what a reader may see. As every function of the
library, each is callable both ways (``ssn.mask(4)`` and ``mask(ssn, 4)``) and refuses
bad input with :class:`MaskingRefused`, whose text names the rule that failed and at
most the argument's CEL type, never the argument.

* ``mask(value, keep_last)``: every code point but the last ``keep_last`` becomes ``*``;
  the result has as many code points as ``value``. ``keep_last`` is a non-negative int
  or uint. A value of ``keep_last`` code points or fewer is masked entirely: the mask
  is meant to show a tail of a longer value, and a short (or truncated) value would
  otherwise be shown whole. So a non-empty value always has at least one ``*``.
* ``email_domain(email)``: the text after the last ``@``, lowercased (Unicode full case
  mapping, as ``to_lowercase``); an error when there is no ``@`` or nothing after it.
* ``year(date)``: the year, an int, of a ``YYYY-MM-DD`` string (the rules of ``date()``)
  or of a timestamp, read in the timestamp's own offset (as ``getFullYear()``).
* ``bucket(number, size)``: the greatest multiple of ``size`` not above ``number``
  (``bucket(47, 10) == 40``, ``bucket(-1, 10) == -10``). With ints and uints the
  arithmetic is exact and the result has ``number``'s type (``bucket(date(dob).age(),
  10)`` is a uint, as ``age()`` is); with a double on either side both are taken as
  doubles, as the comparison operators do, and the result is the double
  ``floor(number / size) * size`` (the quotient rounded to a double before the floor,
  so ``bucket(1.0, 0.1) == 1.0``). ``size`` must be above 0; doubles must be finite,
  and the result must fit its type.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Mapping
from typing import Final, cast

import celpy.celtypes as ct
from celpy.evaluation import Result

from vault.enclave.cel.dates import DateParseError, parse_iso_date
from vault.enclave.cel.errors import type_name
from vault.enclave.cel.operators import NUMERIC_KINDS, kind_of

MASK_CHARACTER: Final = "*"
_INT64 = range(-(2**63), 2**63)


class MaskingRefused(Exception):
    """A masking function refused its arguments; ``str()`` never contains them."""


def _string(value: object) -> str:
    if kind_of(value) != "string":
        raise MaskingRefused(f"expected a string argument, got {type_name(value)}")
    return cast(str, value)


def mask(value: object, keep_last: object) -> Result:
    text = _string(value)
    if kind_of(keep_last) not in ("int", "uint"):
        raise MaskingRefused(f"expected an int argument for keep_last, got {type_name(keep_last)}")
    keep = int(cast(int, keep_last))
    if keep < 0:
        raise MaskingRefused("keep_last must not be negative")
    if keep >= len(text):
        return ct.StringType(MASK_CHARACTER * len(text))
    hidden = len(text) - keep
    return ct.StringType(MASK_CHARACTER * hidden + text[hidden:])


def email_domain(email: object) -> Result:
    text = _string(email)
    _, at, domain = text.rpartition("@")
    if not at:
        raise MaskingRefused("no '@' in the email address")
    if not domain:
        raise MaskingRefused("empty domain after '@'")
    return ct.StringType(domain.lower())


def year(date: object) -> Result:
    kind = kind_of(date)
    if kind == "timestamp":
        return ct.IntType(cast(datetime.datetime, date).year)
    if kind != "string":
        raise MaskingRefused(f"expected a string or timestamp argument, got {type_name(date)}")
    try:
        return ct.IntType(parse_iso_date(cast(str, date)).year)
    except DateParseError as exc:
        # chrono's fixed messages (dates.py), which never quote the input.
        raise MaskingRefused(str(exc)) from None


def _double_bucket(number: float, size: float) -> Result:
    if not math.isfinite(number) or not math.isfinite(size):
        raise MaskingRefused("number and size must be finite")
    if size <= 0:
        raise MaskingRefused("size must be greater than 0")
    # The quotient rounded to a double first, as (number / size).floor() * size in Rust:
    # bucket(1.0, 0.1) is 1.0. Python's float // floors the exact quotient (0.9 here).
    quotient = number / size
    if not math.isfinite(quotient):
        raise MaskingRefused("result out of double range")
    result = math.floor(quotient) * size
    if not math.isfinite(result):
        raise MaskingRefused("result out of double range")
    return ct.DoubleType(result)


def bucket(number: object, size: object) -> Result:
    number_kind, size_kind = kind_of(number), kind_of(size)
    if number_kind not in NUMERIC_KINDS:
        raise MaskingRefused(f"expected a number argument, got {type_name(number)}")
    if size_kind not in NUMERIC_KINDS:
        raise MaskingRefused(f"expected a number argument for size, got {type_name(size)}")
    if "double" in (number_kind, size_kind):
        return _double_bucket(float(cast(float, number)), float(cast(float, size)))
    whole, step = int(cast(int, number)), int(cast(int, size))
    if step <= 0:
        raise MaskingRefused("size must be greater than 0")
    result = (whole // step) * step
    if number_kind == "uint":
        # 0 <= result <= number: always a uint.
        return ct.UintType(result)
    if result not in _INT64:
        raise MaskingRefused("result out of int range")
    return ct.IntType(result)


MASKING_FUNCTIONS: Final[Mapping[str, Callable[..., Result]]] = {
    "mask": mask,
    "email_domain": email_domain,
    "year": year,
    "bucket": bucket,
}
