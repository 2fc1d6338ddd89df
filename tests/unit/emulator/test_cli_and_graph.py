"""Command-line parsing, the status table and the start-order graph."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from emulator.daemon.graph import LaunchError, Node, check_graph, launch
from emulator.daemon.state import ComponentState, EmulatorState
from emulator.tools.cli import build_parser, config_from_args, format_table, main


def test_up_defaults() -> None:
    args = build_parser().parse_args(["up"])
    config = config_from_args(args)
    assert config.backend == "moto" and config.enclave_runtime == "namespace"
    assert config.state_dir == Path(".emulator").absolute()
    assert config.port == 7450 and not config.sigv4


def test_up_options() -> None:
    args = build_parser().parse_args(
        [
            "up",
            "--backend",
            "localstack",
            "--enclave-runtime",
            "container",
            "--state-dir",
            "/tmp/s",
            "--port",
            "0",
        ]
    )
    config = config_from_args(args)
    assert (config.backend, config.enclave_runtime, config.port) == ("localstack", "container", 0)
    assert config.state_dir == Path("/tmp/s")


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--backend", "aws"],
        ["up", "--enclave-runtime", "vm"],
        ["up", "--port", "x"],
        ["frobnicate"],
        [],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_logs_status_down_and_demo_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["logs", "gateway", "-f"])
    assert args.component == "gateway" and args.follow
    assert parser.parse_args(["logs"]).component is None
    assert parser.parse_args(["status", "--json"]).json
    assert parser.parse_args(["down", "--state-dir", "x"]).state_dir == Path("x")
    assert parser.parse_args(["demo", "--backend", "localstack"]).backend == "localstack"


def test_status_and_down_without_an_emulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out


def test_status_table() -> None:
    state = EmulatorState(
        phase="running",
        daemon_pid=1,
        state_dir="/s",
        backend="moto",
        enclave_runtime="namespace",
        components=[
            ComponentState("backend", "http://127.0.0.1:5000", [11], True),
            ComponentState("enclave", "vsock://16:5050", [], False, "not running"),
        ],
    )
    lines = format_table(state).splitlines()
    assert lines[0].split() == ["COMPONENT", "ADDRESS", "PID", "HEALTH"]
    assert lines[1].split() == ["backend", "http://127.0.0.1:5000", "11", "ok"]
    assert lines[2].split()[:4] == ["enclave", "vsock://16:5050", "-", "DOWN"]


def test_graph_starts_in_dependency_order_and_in_parallel() -> None:
    events: list[str] = []
    lock = threading.Lock()

    def step(name: str, seconds: float) -> Node:
        def run() -> None:
            with lock:
                events.append(f"+{name}")
            time.sleep(seconds)
            with lock:
                events.append(f"-{name}")

        return Node(name, NEEDS[name], run)

    NEEDS = {"a": (), "b": (), "c": ("a", "b"), "d": ("c",)}
    started = time.monotonic()
    order = launch([step("a", 0.2), step("b", 0.2), step("c", 0.01), step("d", 0.01)])
    assert time.monotonic() - started < 0.39  # a and b overlapped
    assert order.index("c") > max(order.index("a"), order.index("b")) and order[-1] == "d"
    assert events.index("+c") > max(events.index("-a"), events.index("-b"))


def test_graph_failure_stops_the_launch_and_reports_what_started() -> None:
    def fail() -> None:
        raise RuntimeError("no backend")

    ran: list[str] = []
    nodes = [
        Node("ok", (), lambda: ran.append("ok")),
        Node("bad", (), fail),
        Node("after", ("bad",), lambda: ran.append("after")),
    ]
    with pytest.raises(LaunchError) as exc:
        launch(nodes)
    assert exc.value.component == "bad" and "no backend" in str(exc.value)
    assert "after" not in ran and exc.value.started == ["ok"]


def test_graph_rejects_cycles_and_unknown_needs() -> None:
    with pytest.raises(ValueError, match="cycle"):
        check_graph([Node("a", ("b",), lambda: None), Node("b", ("a",), lambda: None)])
    with pytest.raises(ValueError, match="unknown"):
        check_graph([Node("a", ("zz",), lambda: None)])
