"""Log-line details the mutation run (``nox -s mutation``) showed no other test pinned down: the
timestamp's exact form, the ``logger`` key, a record whose exception value is missing, non-ASCII
text written as is, and a numeric level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from vault.common.logs import JsonFormatter, VaultLogHandler, configure_logging


def record(message: str = "hello", **kwargs: object) -> logging.LogRecord:
    made = logging.LogRecord("vault.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in kwargs.items():
        setattr(made, key, value)
    return made


def test_timestamp_is_utc_iso8601_with_milliseconds():
    line = JsonFormatter("svc").format(record(created=1700000000.0, msecs=123.9))
    entry = json.loads(line)
    assert entry["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_entry_names_level_service_and_logger():
    entry = json.loads(JsonFormatter("svc").format(record()))
    assert (entry["level"], entry["service"], entry["logger"], entry["message"]) == (
        "INFO",
        "svc",
        "vault.test",
        "hello",
    )


def test_exception_type_is_written_even_without_its_value():
    entry = json.loads(JsonFormatter("svc").format(record(exc_info=(ValueError, None, None))))
    assert entry["exception"] == "ValueError"
    assert entry["stack"] == []


def test_non_ascii_text_is_written_as_is():
    line = JsonFormatter("svc").format(record("Zoë"))
    assert '"message": "Zoë"' in line


@pytest.fixture
def restored_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level, raise_exceptions = list(root.handlers), root.level, logging.raiseExceptions
    yield root
    for handler in list(root.handlers):
        if isinstance(handler, VaultLogHandler):
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.raiseExceptions = raise_exceptions


def test_a_numeric_level_is_accepted(restored_root: logging.Logger):
    configure_logging("svc", logging.DEBUG)
    assert restored_root.level == logging.DEBUG
    configure_logging("svc", "warning")
    assert restored_root.level == logging.WARNING
