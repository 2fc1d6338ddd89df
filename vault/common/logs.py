"""JSON-lines logging for the parent and enclave processes.

Log calls pass structure through ``extra={"fields": {...}}``; messages and fields
must never carry plaintext, ciphertext or credentials (decision D9). Third-party
loggers that print evaluated values at DEBUG (CEL, botocore) are held at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Libraries whose debug output can contain request bodies or evaluated values.
QUIET_LOGGERS = ("celpy", "lark", "botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore")


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
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: exception texts can quote input values.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str | int = "INFO") -> None:
    """Send JSON lines to stderr for ``service``; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vault_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler._vault_handler = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
