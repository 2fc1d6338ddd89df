"""The JSON log formatter never writes an exception's text, however the exception is logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from vault.common.logs import JsonFormatter, VaultLogHandler, configure_logging

SSN = "123-45-6789"


class FieldError(ValueError):
    """An error whose text quotes the value it failed on, as parsers and CEL errors do."""


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("tests.unit.common.logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert SSN not in text and SSN.replace("-", "") not in text
    return [json.loads(line) for line in text.splitlines()]


def fail_with_the_value() -> None:
    raise FieldError(f"ssn9 {SSN} is not a valid value for {SSN.replace('-', '')}")


def test_logger_exception_writes_the_type_and_frames_not_the_text(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        fail_with_the_value()
    except FieldError:
        logger.exception("decrypt failed", extra={"fields": {"vault_id": "v_1"}})
    [entry] = lines(stream)
    assert entry["message"] == "decrypt failed" and entry["level"] == "ERROR"
    assert entry["exception"] == "FieldError" and entry["vault_id"] == "v_1"
    # The frames place the failure: file, line, function; no source text, no values.
    assert entry["stack"][-1].startswith("test_logs.py:") and entry["stack"][-1].endswith(
        " in fail_with_the_value"
    )
    assert all(frame.count(" in ") == 1 for frame in entry["stack"])


def test_an_exception_chained_from_another_writes_neither_text(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        try:
            fail_with_the_value()
        except FieldError as exc:
            raise RuntimeError(f"wrapped: {exc}") from exc
    except RuntimeError:
        logger.error("failed", exc_info=True)
    [entry] = lines(stream)
    assert entry["exception"] == "RuntimeError"


def test_an_exception_as_message_argument_or_field_is_written_as_its_type(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        fail_with_the_value()
    except FieldError as exc:
        logger.exception(exc)  # the message is the exception itself
        logger.warning("cannot open: %s", exc)
        logger.warning("cannot open: %(error)s", {"error": exc})
        logger.warning("cannot open", extra={"fields": {"error": exc}})
        logger.warning("cannot open", extra={"fields": {"errors": [exc]}})
    entries = lines(stream)
    assert [entry["message"] for entry in entries] == [
        "FieldError",
        "cannot open: FieldError",
        "cannot open: FieldError",
        "cannot open",
        "cannot open",
    ]
    assert entries[0]["exception"] == "FieldError"
    assert entries[3]["error"] == "FieldError"


def test_ordinary_arguments_are_formatted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("served %d requests in %.1f s", 3, 0.5)
    logger.info("%(count)d keys", {"count": 2})
    assert [entry["message"] for entry in lines(stream)] == ["served 3 requests in 0.5 s", "2 keys"]


def test_a_record_without_exception_has_no_exception_keys(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.error("plain", exc_info=False)
    [entry] = lines(stream)
    assert "exception" not in entry and "stack" not in entry


def test_configure_logging_installs_one_handler_however_often_it_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("first")
        configure_logging("second", "debug")
        ours = [handler for handler in root.handlers if isinstance(handler, VaultLogHandler)]
        assert len(ours) == 1 and root.level == logging.DEBUG
        assert logging.getLogger("botocore").level == logging.WARNING
        try:
            fail_with_the_value()
        except FieldError:
            logging.getLogger("tests.unit.common.configured").exception("failed")
        err = capsys.readouterr().err
        assert SSN not in err
        entry = json.loads(err.strip().splitlines()[-1])
        assert entry["service"] == "second" and entry["exception"] == "FieldError"
    finally:
        for handler in list(root.handlers):
            if isinstance(handler, VaultLogHandler):
                root.removeHandler(handler)
        root.setLevel(level)


def test_a_record_whose_arguments_do_not_fit_is_not_printed_raw(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test")
    logging.getLogger("vault.test").info("ssn %s %s", "123-45-6789")
    assert "123-45-6789" not in capsys.readouterr().err
