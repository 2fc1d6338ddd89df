"""JSON-lines logging for the parent and enclave processes.

Log calls pass structure through ``extra={"fields": {...}}``; messages and fields
must never carry plaintext, ciphertext or credentials (decision D9). Third-party
loggers that print evaluated values at DEBUG (CEL, botocore) are held at WARNING.

An exception's text can quote the input it failed on (a field value, a CEL operand), so
the formatter never writes one: a logged exception -- as ``exc_info``, as the message
itself, as a ``%`` argument or as a field value -- appears as its type name, and its
traceback as frames (file name, line, function) without source lines or values.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import PurePath
from types import TracebackType
from typing import Any, TextIO

# Libraries whose debug output can contain request bodies or evaluated values.
QUIET_LOGGERS = ("celpy", "lark", "botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore")
#: The innermost frames of a traceback that are written; enough to place the failure.
MAX_FRAMES = 32


def _redacted(value: object) -> object:
    """``value``, except that an exception becomes its type name (its text may hold input)."""
    return type(value).__name__ if isinstance(value, BaseException) else value


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()`` with exceptions in the message or its arguments reduced to types."""
    message = str(_redacted(record.msg))
    args = record.args
    if not args:
        return message
    if isinstance(args, Mapping):
        return message % {key: _redacted(value) for key, value in args.items()}
    return message % tuple(_redacted(value) for value in args)


def _frames(tb: TracebackType | None) -> list[str]:
    """Where the exception passed, innermost last: ``file.py:line in function``, nothing else."""
    frames = traceback.extract_tb(tb)[-MAX_FRAMES:]
    return [f"{PurePath(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in frames]


def _json_default(value: object) -> str:
    # Called for every value JSON cannot encode, exceptions among them, at any depth of a field.
    return str(_redacted(value))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": _message(record),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The type and the frames only: exception texts can quote input values.
            entry["exception"] = record.exc_info[0].__name__
            entry["stack"] = _frames(record.exc_info[2])
        return json.dumps(entry, default=_json_default, ensure_ascii=False)


class VaultLogHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure_logging` installs, told apart by its type when it runs again."""


def configure_logging(service: str, level: str | int = "INFO") -> None:
    """Send JSON lines to stderr for ``service``; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, VaultLogHandler):
            root.removeHandler(handler)
    installed = VaultLogHandler(sys.stderr)
    installed.setFormatter(JsonFormatter(service))
    root.addHandler(installed)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # A record whose arguments do not fit its format would otherwise be printed raw
    # (message and arguments, i.e. possibly values) to stderr by logging itself.
    logging.raiseExceptions = False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
