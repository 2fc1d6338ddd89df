"""Validation errors as clients read them: location, rule and a message, never a value.

Powertools hands over pydantic's error dicts, which carry the offending ``input`` and a
``ctx`` that can hold input too (a JSON parse error's text). Each error leaves as a
:class:`Problem`: the stable ``loc`` and ``type`` clients match on, and a ``msg`` written
here from the location, the rule and the rule's own limits ("fields[2]: 'middle' is not a
vault field; known: email, ...", "body: invalid JSON at character 21: expected ','").

What a message may quote: the schema's own names and limits, and a name the client sent
(an object key, an entry of a field-name list) if it looks like an identifier: at most
:data:`MAX_QUOTED_NAME` ASCII letters, digits, ``_`` and ``-``, the first a letter or
``_``. Anything else a client sent, values above all, is never repeated; a key that is
not identifier-like shows as :data:`HIDDEN_NAME` in ``loc`` too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vault.api.models import (
    SCHEMA_FIELDS,
    SEARCHABLE_FIELDS,
    DecryptBody,
    DeleteBody,
    SearchBody,
    normalize_field_name,
)
from vault.common.messages import MAX_EXPRESSION_LENGTH

MAX_QUOTED_NAME = 64
HIDDEN_NAME = "<hidden>"
_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_\-]{{0,{MAX_QUOTED_NAME - 1}}}")
#: pydantic marks an error in a dictionary's key (not its value) with this last ``loc`` part.
_KEY_MARK = "[key]"
_KNOWN_FIELDS = ", ".join(SCHEMA_FIELDS)

#: ``json`` module reasons (C and pure-Python spellings), as prefixes; the pure-Python ones
#: quote the offending character, so only these fixed texts are passed on.
_JSON_REASONS: tuple[tuple[str, str], ...] = (
    ("Expecting value", "expected a value"),
    ("Expecting property name enclosed in double quotes", "expected a property name in double quotes"),
    ("Expecting ':' delimiter", "expected ':'"),
    ("Expecting ',' delimiter", "expected ','"),
    ("Unterminated string", "unterminated string"),
    ("Invalid control character", "control character inside a string"),
    ("Invalid \\uXXXX escape", "invalid \\uXXXX escape"),
    ("Invalid \\escape", "invalid escape"),
    ("Extra data", "more data after the JSON value"),
    ("Illegal trailing comma before end of object", "trailing comma before '}'"),
    ("Illegal trailing comma before end of array", "trailing comma before ']'"),
)

#: Fields whose pattern is a format; for the fixed-length ones a wrong length is the same mistake.
_FORMATS: dict[str, str] = {
    "phone_number": "an E.164 phone number: '+' and 2 to 15 digits, the first not 0",
    "ssn9": "exactly 9 digits",
    "ssn4": "exactly 4 digits",
    "dob": "a date as YYYY-MM-DD",
    "postal_code": "letters, digits, spaces and '-' only",
    "country": "a two-letter country code",
    "vault_id": "a vault id: 'v_' and up to 27 letters or digits",
}
_FIXED_LENGTH = frozenset({"ssn9", "ssn4", "dob", "country"})

_FIXED_MESSAGES: dict[str, str] = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be an object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "null_not_allowed": "null is not allowed; omit the field instead",
    "expression_too_long": f"must be at most {MAX_EXPRESSION_LENGTH} bytes (UTF-8)",
    "nothing_to_delete": "set delete_all to true or name at least one field",
    "forget_with_body": "forget=true takes no body; send none",
    "utf8_invalid": "is not valid UTF-8",
    "search_field": f"must be a searchable field: {', '.join(SEARCHABLE_FIELDS)}",
    "search_value": "is not a valid value of the field searched",
}


@dataclass(frozen=True)
class Problem:
    """One refused input, as the 422 body and the log line show it."""

    loc: list[str | int]
    type: str
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": self.loc, "type": self.type, "msg": self.msg}


@dataclass(frozen=True)
class BodyShape:
    """The keys the route's body accepts, for the message about an unknown key."""

    keys: tuple[str, ...]
    vault_fields: bool


VAULT_BODY = BodyShape(SCHEMA_FIELDS, vault_fields=True)
DELETE_BODY = BodyShape(tuple(DeleteBody.model_fields), vault_fields=False)
DECRYPT_BODY = BodyShape(tuple(DecryptBody.model_fields), vault_fields=False)
SEARCH_BODY = BodyShape(tuple(SearchBody.model_fields), vault_fields=False)


def body_shape(method: str, path: str) -> BodyShape:
    """The body model of the route ``method path`` (create and update take vault fields)."""
    if method.upper() == "DELETE":
        return DELETE_BODY
    if path.rstrip("/").endswith("/decrypt"):
        return DECRYPT_BODY
    if path.rstrip("/").endswith("/vaults/search"):
        return SEARCH_BODY
    return VAULT_BODY


def quotable(name: object) -> str | None:
    """``'name'`` if a client-sent name may be repeated, else ``None``."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return f"'{name}'"
    return None


def _safe_loc(loc: Sequence[Any]) -> list[str | int]:
    # Source and parameter names are the schema's; deeper string parts are object keys.
    safe: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(part, int) and not isinstance(part, bool):
            safe.append(part)
        elif index == 0 or part == _KEY_MARK or part == "" or quotable(part):
            safe.append(str(part))
        else:
            safe.append(HIDDEN_NAME)
    return safe


def _where(loc: list[str | int]) -> str:
    """``fields[2]``, ``expressions.age``, ``body``, ``query parameter limit``."""
    if not loc:
        return "request"
    source, rest = loc[0], list(loc[1:])
    if source in ("query", "path", "header") and rest:
        return f"{source} parameter {'.'.join(str(part) for part in rest)}"
    if source != "body" or not rest:
        return str(source)
    text = ""
    for part in rest:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _limit(ctx: Mapping[str, Any], name: str) -> int | None:
    value = ctx.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _json_message(error: Mapping[str, Any], text: str | None) -> str:
    loc = error.get("loc", ())
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    message = "invalid JSON"
    if position is not None:
        message += f" at character {position}"
        if text is not None and 0 <= position <= len(text) and "\n" in text[:position]:
            line = text.count("\n", 0, position) + 1
            column = position - text.rfind("\n", 0, position)
            message += f" (line {line}, column {column})"
    ctx = error.get("ctx")
    reason = ctx.get("error") if isinstance(ctx, Mapping) else None
    if isinstance(reason, str):
        for prefix, readable in _JSON_REASONS:
            if reason.startswith(prefix):
                return f"{message}: {readable}"
    return message


def _unknown_key(loc: list[str | int], shape: BodyShape) -> str:
    name = loc[-1] if loc[-1] != HIDDEN_NAME else None
    quoted = quotable(name)
    if len(loc) == 2 and shape.vault_fields:
        subject = f"{quoted} is not a vault field" if quoted else "a key that is not a vault field was sent"
        return f"{subject}; known: {_KNOWN_FIELDS}"
    subject = f"{quoted} is not accepted here" if quoted else "a key that is not accepted here was sent"
    if len(loc) == 2:
        return f"{subject}; accepted: {', '.join(shape.keys)}"
    return subject


def _not_a_field(error: Mapping[str, Any]) -> str:
    value = error.get("input")
    quoted = quotable(normalize_field_name(value)) if isinstance(value, str) else None
    subject = f"{quoted} is not a vault field" if quoted else "not a vault field"
    return f"{subject}; known: {_KNOWN_FIELDS}"


def _length(kind: str, ctx: Mapping[str, Any], unit: str) -> str | None:
    bound = _limit(ctx, "max_length" if kind == "too_long" else "min_length")
    if bound is None:
        return None
    return f"must be at {'most' if kind == 'too_long' else 'least'} {_plural(bound, unit)}"


def _text(rule: str, error: Mapping[str, Any], loc: list[str | int], shape: BodyShape) -> str | None:
    """The message after ``where:``, or ``None`` when the rule has no specific one."""
    ctx = error.get("ctx")
    ctx = ctx if isinstance(ctx, Mapping) else {}
    field = loc[-1] if len(loc) > 1 and isinstance(loc[-1], str) else None
    if rule == "missing":
        return "a JSON object is required" if len(loc) == 1 and loc[0] == "body" else "is required"
    if rule == "extra_forbidden":
        return _unknown_key(loc, shape)
    if rule == "vault_field":
        return _not_a_field(error)
    if rule in ("string_pattern_mismatch", "string_too_short", "string_too_long") and field in _FORMATS:
        if rule == "string_pattern_mismatch" or field in _FIXED_LENGTH:
            return f"must be {_FORMATS[field]}"
    if rule in ("string_too_short", "string_too_long"):
        return _length(rule.removeprefix("string_"), ctx, "character")
    if rule in ("too_short", "too_long"):
        return _length(rule, ctx, "item")
    if rule == "literal_error":
        # The schema's own choices (for example forget's 'true' or 'false'), never the input.
        expected = ctx.get("expected")
        return f"must be {expected}" if isinstance(expected, str) else None
    if rule == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        return f"must match {pattern}" if isinstance(pattern, str) else None
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "less_than_equal": ("le", "at most"),
        "greater_than": ("gt", "more than"),
        "less_than": ("lt", "less than"),
    }
    if rule in bounds:
        name, words = bounds[rule]
        bound = _limit(ctx, name)
        return f"must be {words} {bound}" if bound is not None else None
    return _FIXED_MESSAGES.get(rule)


def describe(
    error: Mapping[str, Any], shape: BodyShape = VAULT_BODY, body_text: str | None = None
) -> Problem:
    """One pydantic or Powertools error dict as a :class:`Problem` (``input`` and ``ctx`` dropped).

    ``body_text`` (the request body, for invalid JSON) is read only to turn the error's
    position into a line and column.
    """
    raw_loc = error.get("loc", ())
    rule = str(error.get("type", "invalid"))
    loc = _safe_loc(raw_loc if isinstance(raw_loc, Sequence) and not isinstance(raw_loc, str) else ())
    if rule == "json_invalid":
        return Problem(loc, rule, f"body: {_json_message(error, body_text)}")
    own = error.get("msg")
    if rule in ("json_too_deep", "json_number_too_long") and isinstance(own, str):
        # Written by vault.api.body from its limits alone.
        return Problem(loc, rule, f"body: {own}")
    if loc and loc[-1] == _KEY_MARK:
        # The dictionary's key is wrong: name the dictionary, never the key.
        where = _where(loc[:-2]) + " key"
    elif rule == "extra_forbidden":
        # The key is the mistake; the message names it if it may.
        where = _where(loc[:-1])
    else:
        where = _where(loc)
    text = _text(rule, error, loc, shape) or f"is not valid ({rule})"
    return Problem(loc, rule, f"{where}: {text}")


def describe_all(
    errors: Sequence[Mapping[str, Any]], shape: BodyShape = VAULT_BODY, body_text: str | None = None
) -> list[Problem]:
    return [describe(error, shape, body_text) for error in errors]
