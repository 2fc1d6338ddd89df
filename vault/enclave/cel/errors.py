"""Error types and the text of ``[name] Compile Error: ...`` / ``Execution Error: ...`` entries.

cel-python's messages quote operands freely (``int("Bob")`` reports ``invalid literal
... 'Bob'``; an undeclared name reports the repr of every variable in scope), and
those operands are decrypted PII. So no library text is ever passed through: each
message is rebuilt from pieces that cannot carry a value — identifiers taken from
the expression's own tokens, CEL type names and fixed phrases — and anything not
recognised becomes a generic message naming only the exception class.
"""

from __future__ import annotations

import re
from typing import Final

import lark.exceptions
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from vault.enclave.cel.limits import MAX_EXPRESSION_LENGTH, LimitExceeded

COMPILE_ERROR: Final = "Compile Error"
EXECUTION_ERROR: Final = "Execution Error"


class ExpressionTooLong(ValueError):
    """An expression exceeds :data:`MAX_EXPRESSION_LENGTH` UTF-8 bytes.

    The message names the output key and the sizes, never the expression text.
    """

    def __init__(self, name: str, length: int) -> None:
        super().__init__(f"[{name}] expression length {length} bytes exceeds maximum {MAX_EXPRESSION_LENGTH}")
        self.name = name
        self.length = length


class CelFunctionError(CELEvalError):
    """An error value returned by one of the vault's functions.

    Returned rather than raised, so that CEL's ``||``/``&&`` treat it like any other
    error value. ``reason`` must be a fixed phrase or built from type names only.
    """

    def __init__(self, function: str, reason: str) -> None:
        # upstream's (cel-interpreter's) wording for a failing function
        super().__init__(f"Error executing function '{function}': {reason}")


# cel-python's class names (and Python's, for values that escape its wrappers) → CEL type names.
_CEL_TYPE_NAMES: Final = {
    "BoolType": "bool",
    "bool": "bool",
    "IntType": "int",
    "int": "int",
    "UintType": "uint",
    "DoubleType": "double",
    "float": "double",
    "StringType": "string",
    "str": "string",
    "BytesType": "bytes",
    "bytes": "bytes",
    "ListType": "list",
    "list": "list",
    "MapType": "map",
    "dict": "map",
    "MessageType": "map",
    "NoneType": "null_type",
    "TimestampType": "google.protobuf.Timestamp",
    "datetime": "google.protobuf.Timestamp",
    "DurationType": "google.protobuf.Duration",
    "timedelta": "google.protobuf.Duration",
    "CELEvalError": "error",
    "type": "type",
    "TypeType": "type",
}


def cel_type_name_of(class_name: str) -> str:
    return _CEL_TYPE_NAMES.get(class_name, class_name)


def type_name(value: object) -> str:
    """The CEL type name of ``value`` (safe to show: it is never the value itself)."""
    for cls in type(value).__mro__:
        if cls.__name__ in _CEL_TYPE_NAMES:
            return _CEL_TYPE_NAMES[cls.__name__]
    return type(value).__name__


_IDENT = r"[_a-zA-Z][_a-zA-Z0-9]*"
_UNDECLARED = re.compile(rf"undeclared reference to '({_IDENT})'")
_NOT_IN_BINDINGS = re.compile(rf"No '({_IDENT})' in bindings")
_NO_MEMBER = re.compile(rf"no such member in mapping: '({_IDENT})'")
_NO_OVERLOAD = re.compile(r"found no matching overload for (.*?) applied to '\(", re.DOTALL)
_NO_FIELD_SELECTION = re.compile(r"with type: '<class '[\w.]*?(\w+)'>' does not support field selection")
_CLASS = re.compile(r"<class '[\w.]*?(\w+)'>")
_RULE = re.compile(r"'(\w+)'\)?$")

# cel-python's grammar rule names (and its own operator names) → CEL operators.
_OPERATORS: Final = {
    "addition_add": "_+_",
    "addition_sub": "_-_",
    "multiplication_mul": "_*_",
    "multiplication_div": "_/_",
    "multiplication_mod": "_%_",
    "relation_lt": "_<_",
    "relation_le": "_<=_",
    "relation_gt": "_>_",
    "relation_ge": "_>=_",
    "relation_eq": "_==_",
    "relation_ne": "_!=_",
    "relation_in": "@in",
    "unary_not": "!_",
    "unary_neg": "-_",
    "conditionalor": "_||_",
    "conditionaland": "_&&_",
    "_||_": "_||_",
    "_&&_": "_&&_",
    "_?_:_": "_?_:_",
    "_[_]": "_[_]",
}

# Fixed phrases cel-python uses; they carry no operand.
_FIXED_PHRASES: Final = {
    "no such overload": "no such overload",
    "return error for overflow": "return error for overflow",
    "modulus or divide by zero": "modulus or divide by zero",
    "divide by zero": "divide by zero",
    "no such key": "no such key",
    "invalid_argument": "invalid argument",
    "match error": "invalid regular expression",
    "Attempt to reduce an empty sequence or a sequence with a None value": (
        "empty list or list with null values"
    ),
}


def _overload_detail(message: str) -> str | None:
    found = _NO_OVERLOAD.match(message)
    if found is None:
        return None
    rule = _RULE.search(found.group(1).strip())
    operator = _OPERATORS.get(rule.group(1) if rule else found.group(1).strip(), "operator")
    operands = ", ".join(cel_type_name_of(name) for name in _CLASS.findall(message[found.end() :]))
    return f"No such overload: {operator} applied to ({operands})"


def _function_name(error: CELEvalError) -> str | None:
    token = error.token
    if token is not None and re.fullmatch(_IDENT, str(token)):
        return str(token)
    return None


def describe_eval_error(error: CELEvalError) -> str:
    """A value-free description of a cel-python evaluation error."""
    if isinstance(error, CelFunctionError):
        return str(error.args[0])
    message = str(error.args[0]) if error.args else ""
    for pattern, template in (
        (_UNDECLARED, "Undeclared reference to '{}'"),
        (_NOT_IN_BINDINGS, "Undeclared reference to '{}'"),
        (_NO_MEMBER, "No such key: '{}'"),
        (_NO_FIELD_SELECTION, "type '{}' does not support field selection"),
    ):
        found = pattern.search(message)
        if found is not None:
            name = found.group(1)
            return template.format(cel_type_name_of(name) if pattern is _NO_FIELD_SELECTION else name)
    overload = _overload_detail(message)
    if overload is not None:
        return overload
    if message.startswith("no such overload:"):
        # cel-python's comparison failure, "no such overload: <repr> <class> != <repr> <class>".
        operands = ", ".join(cel_type_name_of(name) for name in _CLASS.findall(message))
        return f"No such overload: values of types ({operands})"
    if message.startswith("unsupported key type:"):
        return "unsupported map key type"
    if message.startswith("Duplicate key"):
        return "duplicate map key"
    function = _function_name(error)
    phrase = _FIXED_PHRASES.get(message)
    if phrase is not None:
        if function is not None:
            if phrase == "return error for overflow":
                # cel-python reports every ValueError of a call this way, e.g. int("abc").
                phrase = "invalid argument or overflow"
            return f"Error executing function '{function}': {phrase}"
        return phrase
    cause = error.args[1] if len(error.args) > 1 else None
    cause_name = cause.__name__ if isinstance(cause, type) else type(error).__name__
    if function is not None:
        return f"Error executing function '{function}': failed ({cause_name})"
    return f"evaluation failed ({cause_name})"


def describe_runtime_failure(exc: BaseException) -> str:
    """A value-free description of anything raised while evaluating an expression."""
    if isinstance(exc, CELEvalError):
        return describe_eval_error(exc)
    if isinstance(exc, LimitExceeded):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "expression nested too deeply"
    return f"evaluation failed ({type(exc).__name__})"


def describe_compile_failure(exc: BaseException) -> str:
    """A value-free description of a parse failure: position and kind, no source excerpt."""
    if isinstance(exc, RecursionError):
        return "expression nested too deeply"
    if not isinstance(exc, CELParseError):
        return f"syntax error ({type(exc).__name__})"
    cause = exc.__context__
    if isinstance(cause, lark.exceptions.UnexpectedCharacters):
        what = "unexpected character"
    elif isinstance(cause, lark.exceptions.UnexpectedToken) and cause.token.type == "$END":
        what = "unexpected end of expression"
    elif isinstance(cause, lark.exceptions.UnexpectedToken):
        what = f"unexpected token {cause.token.type}"
    elif isinstance(cause, lark.exceptions.UnexpectedEOF):
        what = "unexpected end of expression"
    else:
        what = "invalid syntax"
    if exc.line is not None and exc.column is not None:
        return f"Syntax error at line {exc.line}, column {exc.column}: {what}"
    return f"Syntax error: {what}"
