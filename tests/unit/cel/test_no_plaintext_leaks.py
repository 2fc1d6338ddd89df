"""Field values reach neither error entries nor logs (decision D9)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from vault.enclave.cel import CelEngine
from vault.enclave.cel.library_logs import LIBRARY_LOGGERS

SECRET = "Zq7SecretValue"
FIELDS: dict[str, str | None] = {"ssn": SECRET, "n": "9" + SECRET, "d": SECRET + "-01-01"}

# Each fails at run time with a field value as operand; cel-python's own messages
# would quote it (or print every variable in scope).
FAILING = [
    "int(ssn)",
    "double(ssn)",
    "uint(n)",
    "ssn + 1",
    "1 + ssn",
    "-ssn",
    "!ssn",
    "ssn < 1",
    "ssn == 1 && ssn",
    "ssn / 2",
    "ssn.foo",
    "ssn.foo()",
    "ssn[0]",
    "[ssn][3]",
    "{ssn: 1}[n]",
    "{ssn: 1, ssn: 2}",
    "{ssn: 1}.missing",
    "undefined_name + ssn",
    "unknown(ssn)",
    "ssn.hex_decode()",
    "ssn.base64_decode()",
    "date(ssn)",
    "date(d)",
    "timestamp(ssn)",
    "duration(ssn)",
    "ssn.matches(ssn + '(')",
    "max(ssn, 1)",
    "ssn.substring(100)",
    "[ssn].map(x, x + 1)",
    "[ssn].all(x, x > 1)",
    "[ssn].exists_one(x, int(x) == 1)",
    "[ssn, 1].filter(x, x > 0)",
    "bytes(ssn) + ssn",
    "type(ssn)",
    "ssn.getHours()",
    "timestamp('2020-01-01T00:00:00Z').getHours(ssn)",
    "has(ssn.x)",
    "ssn ? 1 : 2",
    "ssn in ssn",
    "[ssn].min()",
    "google.protobuf.StringValue{value: ssn}.x",
    "dyn(ssn).size(1)",
    "mask(ssn, -1)",
    "mask(ssn, ssn)",
    "email_domain(ssn)",
    "email_domain(ssn + '@')",
    "year(ssn)",
    "year(d)",
    "bucket(ssn, 10)",
    "bucket(1, ssn)",
]


def test_error_entries_never_quote_field_values(engine: CelEngine) -> None:
    expressions = {f"e{index}": text for index, text in enumerate(FAILING)}
    result = engine.evaluate(FIELDS, expressions)
    failed = {entry.split("]")[0][1:] for entry in result.errors}
    # Nearly all of them fail (a few, e.g. has(), legitimately succeed); none leaks.
    assert len(failed) >= len(FAILING) - 5
    for entry in result.errors:
        assert SECRET not in entry, entry
        assert SECRET[:6] not in entry, entry


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(params=[logging.DEBUG, logging.WARNING], ids=["debug", "warning"])
def logged_engine(request: pytest.FixtureRequest) -> Iterator[tuple[CelEngine, _Collector, _Collector]]:
    """An engine, a root handler at DEBUG and a handler on cel-python's own logger.

    After the engine exists the library loggers are set to DEBUG (a careless later
    configuration) or WARNING (what ``vault.common.logs.configure_logging`` does).
    """
    root = logging.getLogger()
    celpy_logger = logging.getLogger("celpy")
    root_collector, library_collector = _Collector(), _Collector()
    saved_root_level = root.level
    engine = CelEngine()
    saved_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    root.addHandler(root_collector)
    root.setLevel(logging.DEBUG)
    celpy_logger.addHandler(library_collector)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(request.param)
    try:
        yield engine, root_collector, library_collector
    finally:
        celpy_logger.removeHandler(library_collector)
        root.removeHandler(root_collector)
        root.setLevel(saved_root_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def test_library_records_never_reach_root_handlers(
    logged_engine: tuple[CelEngine, _Collector, _Collector],
) -> None:
    engine, root_collector, library_collector = logged_engine
    expressions = {f"e{index}": text for index, text in enumerate(FAILING)}
    expressions["ok"] = "[ssn].map(x, x.to_uppercase())"
    engine.evaluate(FIELDS, expressions)
    # cel-python logs operands at ERROR in some paths; stand in for one of them.
    logging.getLogger("celpy.celpy.evaluation").error("function(*%s)", (SECRET,))

    # cel-python's records exist and carry the plaintext...
    assert any(SECRET in record.getMessage() for record in library_collector.records)
    # ...but none of them reached the root logger's handlers, at any level.
    leaked = [record for record in root_collector.records if record.name.split(".")[0] in LIBRARY_LOGGERS]
    assert leaked == []
    assert not any(SECRET in record.getMessage() for record in root_collector.records)


def test_library_loggers_are_detached_from_the_root() -> None:
    CelEngine()
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        assert library_logger.propagate is False
        assert library_logger.level > logging.CRITICAL
        assert any(isinstance(handler, logging.NullHandler) for handler in library_logger.handlers)


def test_the_shared_logging_setup_names_the_same_loggers() -> None:
    from vault.common.logs import QUIET_LOGGERS

    assert set(LIBRARY_LOGGERS) <= set(QUIET_LOGGERS)


def test_an_invalid_pattern_from_a_field_reaches_no_stream(
    engine: CelEngine, capfd: pytest.CaptureFixture[str]
) -> None:
    # RE2 prints patterns it cannot parse to the process's stderr (file descriptor 2),
    # below Python's logging; the enclave's stderr is its log.
    result = engine.evaluate(FIELDS, {"m": "'x'.matches(ssn + '(')"})
    assert result.errors and SECRET not in result.errors[0]
    captured = capfd.readouterr()
    assert SECRET not in captured.err and SECRET not in captured.out
