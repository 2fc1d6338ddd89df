"""Hypothesis strategies near the API's data model: valid vault fields and ways to break them."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

from vault.api.models import SCHEMA_FIELDS

# Characters that are whitespace neither to Python nor to pydantic-core (Rust), so the
# stripped value a request stores is known exactly: padding is added separately.
_WORD = st.characters(blacklist_categories=("Z", "Cc", "Cs", "Cf", "Co", "Cn"))
_PADDING = st.sampled_from(["", " ", "  ", "\t", "\n", " \t "])

FREE_TEXT = (
    "email",
    "first_name",
    "middle_name",
    "last_name",
    "address1",
    "address2",
    "address3",
    "city",
    "state",
)


def _text_core(max_words: int = 3) -> st.SearchStrategy[str]:
    return st.lists(st.text(_WORD, min_size=1, max_size=12), max_size=max_words).map(" ".join)


#: The stored (stripped) value of each field.
FIELD_VALUES: dict[str, st.SearchStrategy[str]] = {
    **{name: _text_core() for name in FREE_TEXT},
    "phone_number": st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True),
    "ssn9": st.from_regex(r"[0-9]{9}", fullmatch=True),
    "ssn4": st.from_regex(r"[0-9]{4}", fullmatch=True),
    # Years far from today, so a date of birth never looks like a log timestamp.
    "dob": st.from_regex(r"1[89][0-9]{2}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    "postal_code": st.from_regex(r"[A-Za-z0-9\-]([A-Za-z0-9\- ]{0,10}[A-Za-z0-9\-])?", fullmatch=True),
    "country": st.from_regex(r"[A-Za-z]{2}", fullmatch=True),
}
assert set(FIELD_VALUES) == set(SCHEMA_FIELDS)


@st.composite
def padded(draw: st.DrawFn, value: str) -> str:
    return draw(_PADDING) + value + draw(_PADDING)


@st.composite
def vault_fields(draw: st.DrawFn, min_size: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    """``(request body, stored values)``: the body's strings carry whitespace padding."""
    names = draw(st.lists(st.sampled_from(SCHEMA_FIELDS), unique=True, min_size=min_size))
    stored = {name: draw(FIELD_VALUES[name]) for name in names}
    body = {name: draw(padded(value)) for name, value in stored.items()}
    return body, stored


@st.composite
def field_name_spellings(draw: st.DrawFn, name: str) -> str:
    """``name`` as a client may spell it: any case, surrounding whitespace."""
    spelled = "".join(char.upper() if draw(st.booleans()) else char for char in name)
    return draw(padded(spelled))


# -- ways to break a vault body ----------------------------------------------------------

_NOT_A_STRING = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_PATTERNS = {
    "phone_number": re.compile(r"\+[1-9]\d{1,14}"),
    "ssn9": re.compile(r"\d{9}"),
    "ssn4": re.compile(r"\d{4}"),
    "dob": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "postal_code": re.compile(r"[A-Za-z0-9\- ]*"),
    "country": re.compile(r"[A-Za-z]{2}"),
}


def _breaks(name: str, value: str) -> bool:
    # pydantic-core strips the value before matching; Python's strip agrees on every
    # whitespace character except U+001C..U+001F, which the text below never contains.
    return not _PATTERNS[name].fullmatch(value.strip())


_ODD_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1c\x1d\x1e\x1f"), max_size=20
)
_OVERSIZE = st.builds(
    lambda core, extra: core * (1025 // len(core) + 1) + extra,
    st.text(_WORD, min_size=1, max_size=3),
    st.text(_WORD, max_size=3),
)


@st.composite
def broken_vault_body(draw: st.DrawFn) -> tuple[str, str]:
    """``(kind, raw JSON text)`` of a body the vault schema must refuse."""
    body, _ = draw(vault_fields())
    kind = draw(
        st.sampled_from(
            ["unknown field", "bad pattern", "oversize", "wrong type", "null", "not an object", "malformed"]
        )
    )
    if kind == "unknown field":
        name = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in SCHEMA_FIELDS))
        body[name] = draw(st.one_of(_ODD_TEXT, _NOT_A_STRING))
    elif kind == "bad pattern":
        name = draw(st.sampled_from(sorted(_PATTERNS)))
        body[name] = draw(_ODD_TEXT.filter(lambda value: _breaks(name, value)))
    elif kind == "oversize":
        name = draw(st.sampled_from([*FREE_TEXT, "postal_code"]))
        # A postal code of valid characters, so that only its length is wrong.
        body[name] = draw(_OVERSIZE) if name != "postal_code" else "1" * draw(st.integers(1025, 1100))
    elif kind == "wrong type":
        body[draw(st.sampled_from(SCHEMA_FIELDS))] = draw(_NOT_A_STRING)
    elif kind == "null":
        body[draw(st.sampled_from(SCHEMA_FIELDS))] = None
    elif kind == "not an object":
        document = st.one_of(
            st.none(), st.integers(), st.booleans(), st.text(max_size=5), st.lists(st.integers())
        )
        return kind, json.dumps(draw(document))
    else:
        return kind, draw(malformed_json(body))
    return kind, json.dumps(body)


@st.composite
def malformed_json(draw: st.DrawFn, document: Any) -> str:
    text = json.dumps(document)
    how = draw(st.sampled_from(["truncate", "trailing", "single quotes", "bare word"]))
    if how == "truncate":
        broken = text[: draw(st.integers(0, len(text) - 1))]
    elif how == "trailing":
        broken = text + draw(st.sampled_from([",", "}", "{", "]", "x"]))
    elif how == "single quotes":
        broken = "{'first_name': 'Ann'}"
    else:
        broken = draw(st.sampled_from(["first_name=Ann", "undefined", "{first_name: 1}", "[1,]"]))
    try:
        json.loads(broken)
    except ValueError:
        return broken
    return broken + "{"


#: Bodies of every route that take one, valid as they stand.
VALID_BODIES: dict[str, dict[str, Any]] = {
    "create": {"first_name": "Ann"},
    "update": {"last_name": "Lee"},
    "delete": {"fields": ["first_name"]},
    "decrypt": {"fields": ["first_name"], "reason": "r"},
}


@st.composite
def hostile_json(draw: st.DrawFn, document: dict[str, Any]) -> tuple[str, str]:
    """``(rule, text)``: ``document`` with one value nested too deep or turned into a too-long integer.

    The depth counts from the top, so the value sits under the document's own object.
    """
    key = draw(st.sampled_from(sorted(document)))
    text = json.dumps({name: value for name, value in document.items() if name != key})
    prefix = text[:-1] + (", " if len(text) > 2 else "") + json.dumps(key) + ": "
    if draw(st.booleans()):
        levels = draw(st.integers(32, 5_000))  # plus the document itself: 33 and more
        openers = draw(st.lists(st.sampled_from(["[", '{"k": ']), min_size=levels, max_size=levels))
        closers = "".join("]" if opener == "[" else "}" for opener in reversed(openers))
        inner = json.dumps(draw(st.one_of(st.integers(-5, 5), st.text(max_size=5), st.just([]))))
        return "json_too_deep", prefix + "".join(openers) + inner + closers + "}"
    digits = draw(st.integers(101, 6_000))
    sign = draw(st.sampled_from(["", "-"]))
    number = sign + str(draw(st.integers(1, 9))) + "0" * (digits - 1)
    return "json_number_too_long", prefix + number + "}"
