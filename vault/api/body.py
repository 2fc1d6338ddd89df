"""Request bodies as JSON, with limits that turn hostile shapes into 422s.

Python's ``json`` parser recurses once per nesting level and converts integers with
``int()``: a body nested 10,000 deep raises ``RecursionError`` and an integer of 5,000
digits raises ``ValueError`` (over the interpreter's ``sys.int_info`` limit, which the
environment can change), both of which would leave as 500 ``InternalError``. No request
of the API nests deeper than 3 levels or holds a number at all, so the limits are far
from any valid body:

* nesting: at most :data:`MAX_JSON_DEPTH` arrays and objects inside each other, counted
  before parsing, so the parser never recurses further (the enclave's BER reader and CEL
  values use the same 32);
* integers: at most :data:`MAX_JSON_INT_DIGITS` digits, independent of the interpreter.

A refusal is :class:`RequestValidationError`, which the app renders like every other
validation error (422 ``ValidationError``, location and rule, never the input).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

MAX_JSON_DEPTH = 32
MAX_JSON_INT_DIGITS = 100
#: A JSON string (escapes included, possibly unterminated): its brackets are text. The
#: possessive ``*+`` and the end-of-text alternative make every string match where it
#: starts, so the scan stays linear for bodies full of quotes and backslashes.
_STRING = re.compile(r'"(?:[^"\\]|\\[\s\S]?)*+(?:"|\Z)')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
#: Brackets as signed steps: opening +1, closing -1 (0xff as a signed byte).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _refusal(rule: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": rule, "loc": ("body",), "msg": message, "input": {}, "ctx": {}}])


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings do not count)."""
    # Done with regular expressions and a running sum in C: linear and fast on 10 MB.
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii")
    return max(accumulate(memoryview(brackets.translate(_STEPS)).cast("b"), initial=0))


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise _refusal("json_number_too_long", f"integers are limited to {MAX_JSON_INT_DIGITS} digits")
    return int(digits)


def parse_json_body(text: str) -> Any:
    """``json.loads`` for request bodies; raises :class:`RequestValidationError` past the limits.

    Malformed JSON still raises :class:`json.JSONDecodeError`, which Powertools reports as
    ``json_invalid``.
    """
    if nesting_depth(text) > MAX_JSON_DEPTH:
        raise _refusal("json_too_deep", f"arrays and objects nest at most {MAX_JSON_DEPTH} deep")
    return json.loads(text, parse_int=_integer)
