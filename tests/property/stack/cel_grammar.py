"""Hypothesis strategies for safe CEL expressions over the vault's fields.

A small typed grammar (string, int and bool expressions) over the schema fields, the
outputs of earlier expressions in the same request (they are in scope, decision D3), the
vault's function library (spec 6.2: case mapping, digests, hex and base64 in both
directions, ``date(...).age()``; the masking functions ``mask``, ``email_domain``,
``year`` and ``bucket``) and standard CEL (``size``, arithmetic, comparisons, also
of ints with uints and doubles, ``startsWith``/``contains``, the conditional operator).
Expressions stay small and cheap,
so the enclave's time and size limits never decide an outcome; many still fail on some
input (a field the vault lacks, ``hex_decode`` of a non-hex value, ``date`` of a name),
which is what the oracle must agree on too.
"""

from __future__ import annotations

import datetime
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from hypothesis import strategies as st

Kind = Literal["string", "int", "bool"]
#: Output names: identifiers (usable by later expressions) and names that are not.
OUTPUT_NAMES = ("out_a", "out_b", "masked", "age", "digest", "Upper", "two words", "x-1")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LITERAL_ALPHABET = string.ascii_letters + string.digits + " -_.@éßİ"
_DIGESTS = ("sha256", "sha384", "sha512")
_CASES = ("to_uppercase", "to_lowercase")
_ENCODERS = ("hex", "base64")
MAX_DEPTH = 3
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


def _call(function: str, argument: str, method: bool) -> str:
    return f"{argument}.{function}()" if method else f"{function}({argument})"


@dataclass
class Scope:
    """Variables an expression may name, by type (fields are strings)."""

    strings: list[str] = field(default_factory=list)
    ints: list[str] = field(default_factory=list)
    bools: list[str] = field(default_factory=list)

    def add(self, name: str, kind: Kind) -> None:
        if _IDENTIFIER.match(name):
            for names in (self.strings, self.ints, self.bools):
                if name in names:
                    names.remove(name)
            {"string": self.strings, "int": self.ints, "bool": self.bools}[kind].append(name)


def string_literal() -> st.SearchStrategy[str]:
    return st.text(_LITERAL_ALPHABET, max_size=8).map(lambda text: json.dumps(text, ensure_ascii=False))


def date_literal() -> st.SearchStrategy[str]:
    """A ``YYYY-MM-DD`` literal, as a date of birth is stored."""
    days = st.dates(datetime.date(1800, 1, 1), datetime.date(2100, 12, 31))
    return days.map(lambda day: json.dumps(day.isoformat()))


def string_expression(scope: Scope, depth: int = MAX_DEPTH) -> st.SearchStrategy[str]:
    leaves: list[st.SearchStrategy[str]] = [string_literal()]
    if scope.strings:
        # Variables weigh more than literals: transforms of stored values are the point.
        leaves += [st.sampled_from(scope.strings)] * 3
    leaf = st.one_of(leaves)
    if depth <= 0:
        return leaf
    inner = st.deferred(lambda: string_expression(scope, depth - 1))
    ints = st.deferred(lambda: int_expression(scope, depth - 1))
    bools = st.deferred(lambda: bool_expression(scope, depth - 1))
    case = st.builds(_call, st.sampled_from(_CASES), inner, st.booleans())
    digest = st.builds(_call, st.sampled_from(_DIGESTS), inner, st.booleans())
    encode = st.builds(
        lambda kind, e, m: _call(f"{kind}_encode", e, m), st.sampled_from(_ENCODERS), inner, st.booleans()
    )
    # Decoding what was encoded gives the value back; decoding anything else mostly fails.
    round_trip = st.builds(
        lambda kind, e: f"{kind}_decode({kind}_encode({e}))", st.sampled_from(_ENCODERS), inner
    )
    decode = st.builds(lambda kind, e: f"{kind}_decode({e})", st.sampled_from(_ENCODERS), inner)
    concat = st.builds(lambda a, b: f"({a} + {b})", inner, inner)
    # keep_last mostly within a value's length, sometimes beyond it or negative.
    mask = st.builds(
        lambda e, n, m: f"{e}.mask({n})" if m else f"mask({e}, {n})",
        inner,
        st.one_of(st.integers(0, 12).map(str), ints),
        st.booleans(),
    )
    # An '@' between two strings mostly gives an address; a bare string mostly has none.
    address = st.one_of(st.builds(lambda a, b: f'({a} + "@" + {b})', inner, inner), inner)
    domain = st.builds(lambda e, m: _call("email_domain", e, m), address, st.booleans())
    # Repetition weighs the choice: mostly transforms that succeed, some that fail.
    return st.one_of(
        leaf,
        leaf,
        case,
        case,
        digest,
        digest,
        encode,
        round_trip,
        decode,
        concat,
        concat,
        mask,
        domain,
        st.builds(lambda e: f"string({e})", ints),
        st.builds(lambda c, a, b: f"({c} ? {a} : {b})", bools, inner, inner),
    )


def int_expression(scope: Scope, depth: int = MAX_DEPTH) -> st.SearchStrategy[str]:
    leaves: list[st.SearchStrategy[str]] = [st.integers(0, 99).map(str)]
    if scope.ints:
        leaves.append(st.sampled_from(scope.ints))
    if "dob" in scope.strings:
        leaves += [st.just("int(date(dob).age())"), st.just("year(dob)")]
    leaf = st.one_of(leaves)
    if depth <= 0:
        return leaf
    strings = st.deferred(lambda: string_expression(scope, depth - 1))
    inner = st.deferred(lambda: int_expression(scope, depth - 1))
    size = st.builds(lambda e, m: _call("size", e, m), strings, st.booleans())
    # Mostly dates, sometimes any string (a name: an error).
    dates = st.one_of(date_literal(), date_literal(), strings)
    # Sizes mostly positive literals, sometimes an expression (zero or negative: an error).
    bucket = st.builds(
        # Parenthesised: a literal receiver such as `5.bucket(2)` would read as a double.
        lambda a, b, m: f"({a}).bucket({b})" if m else f"bucket({a}, {b})",
        inner,
        st.one_of(st.integers(1, 20).map(str), inner),
        st.booleans(),
    )
    return st.one_of(
        leaf,
        size,
        size,
        bucket,
        st.builds(lambda e: f"int(date({e}).age())", strings),
        st.builds(lambda e, m: _call("year", e, m), dates, st.booleans()),
        st.builds(lambda e: f"year(date({e}))", dates),
        st.builds(
            lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner
        ),
    )


def _numbers(scope: Scope) -> st.SearchStrategy[str]:
    """Numeric operands of other types than int: uint and double literals, ``age()`` (a uint)."""
    options = [
        st.integers(0, 99).map(lambda n: f"{n}u"),
        st.integers(0, 99).map(lambda n: f"{n}.0"),
        st.sampled_from(["0.5", "39.5", "-1.0", "dyn(40)", "40u"]),
    ]
    if "dob" in scope.strings:
        options += [st.just("date(dob).age()"), st.just("bucket(date(dob).age(), 10)")]
    return st.one_of(options)


def bool_expression(scope: Scope, depth: int = MAX_DEPTH) -> st.SearchStrategy[str]:
    leaves: list[st.SearchStrategy[str]] = [st.sampled_from(["true", "false"])]
    if scope.bools:
        leaves.append(st.sampled_from(scope.bools))
    leaf = st.one_of(leaves)
    if depth <= 0:
        return leaf
    strings = st.deferred(lambda: string_expression(scope, depth - 1))
    ints = st.deferred(lambda: int_expression(scope, depth - 1))
    inner = st.deferred(lambda: bool_expression(scope, depth - 1))
    return st.one_of(
        leaf,
        st.builds(lambda a, op, b: f"({a} {op} {b})", strings, st.sampled_from(["==", "!="]), strings),
        st.builds(
            lambda a, op, b: f"({a} {op} {b})", ints, st.sampled_from(["<", "<=", ">", ">=", "=="]), ints
        ),
        # Numbers of different types compare by value (upstream's interpreter): int, uint, double.
        st.builds(lambda a, op, b: f"({a} {op} {b})", ints, st.sampled_from(_COMPARISONS), _numbers(scope)),
        st.builds(
            lambda a, method, b: f"{a}.{method}({b})",
            strings,
            st.sampled_from(["startsWith", "endsWith", "contains"]),
            strings,
        ),
        st.builds(lambda e, m: _call("is_empty", e, m), strings, st.booleans()),
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["&&", "||"]), inner),
        st.builds(lambda e: f"!{e}", inner),
    )


def typed_expression(scope: Scope) -> st.SearchStrategy[tuple[Kind, str]]:
    return st.one_of(
        string_expression(scope).map(lambda e: ("string", e)),
        int_expression(scope).map(lambda e: ("int", e)),
        bool_expression(scope).map(lambda e: ("bool", e)),
    )


@st.composite
def expression_maps(
    draw: st.DrawFn,
    variables: Sequence[str],
    schema_fields: Sequence[str],
    min_size: int = 0,
    max_size: int = 4,
) -> dict[str, str]:
    """``{output name: expression}`` in request order; later expressions may use earlier outputs.

    ``variables`` are the fields the expressions mostly refer to (the decrypted ones); any
    schema field may be named, and an output may take a field's name (it replaces it).
    """
    scope = Scope(strings=list(variables))
    expressions: dict[str, str] = {}
    names = st.one_of(st.sampled_from(OUTPUT_NAMES), st.sampled_from(list(schema_fields)))
    for _ in range(draw(st.integers(min_size, max_size))):
        name = draw(names.filter(lambda n: n not in expressions))
        # Now and then a field the request did not decrypt: an undeclared reference.
        local = Scope(list(scope.strings), list(scope.ints), list(scope.bools))
        if draw(st.integers(0, 9)) == 0:
            local.strings.append(draw(st.sampled_from(list(schema_fields))))
        kind, text = draw(typed_expression(local))
        expressions[name] = text
        scope.add(name, kind)
    return expressions
