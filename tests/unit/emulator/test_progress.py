"""Progress of slow steps: events, the daemon's progress file, and how they are printed."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.supervisor import progress_sink
from emulator.host.progress import (
    ProgressFile,
    ProgressFileReader,
    ProgressPrinter,
    StepEvent,
    format_seconds,
    set_sink,
    step,
)


@pytest.fixture
def events() -> Iterator[list[StepEvent]]:
    seen: list[StepEvent] = []
    previous = set_sink(seen.append)
    try:
        yield seen
    finally:
        set_sink(previous)


def test_a_step_reports_its_begin_and_its_end_with_the_elapsed_time(events: list[StepEvent]) -> None:
    with step("debootstrap bookworm"):
        time.sleep(0.05)
    assert [(e.step, e.outcome) for e in events] == [
        ("debootstrap bookworm", "begin"),
        ("debootstrap bookworm", "done"),
    ]
    assert 0.05 <= events[1].seconds < 5


def test_a_failing_step_is_reported_failed_and_its_error_goes_on(events: list[StepEvent]) -> None:
    with pytest.raises(RuntimeError, match="mirror unreachable"), step("apt-get update"):
        raise RuntimeError("mirror unreachable")
    assert [e.outcome for e in events] == ["begin", "failed"]


def test_a_broken_sink_does_not_break_the_step() -> None:
    def broken(_event: StepEvent) -> None:
        raise OSError("disk full")

    previous = set_sink(broken)
    try:
        with step("npm install"):
            done = True
    finally:
        set_sink(previous)
    assert done


def test_the_progress_file_is_read_in_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    reader = ProgressFileReader(path)
    assert reader.new_events() == []  # not there yet
    ProgressFile(path)(StepEvent("starting dockerd", "begin"))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"outcome": "done", "sec')  # a line being written
    assert reader.new_events() == [StepEvent("starting dockerd", "begin")]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('onds": 2.5, "step": "starting dockerd"}\nnot json\n')
    assert reader.new_events() == [StepEvent("starting dockerd", "done", 2.5)]
    assert reader.new_events() == []


def test_the_daemon_sink_writes_what_up_relays(tmp_path: Path) -> None:
    layout = StateLayout(tmp_path)
    sink = progress_sink(layout)
    sink(StepEvent("base image: debootstrap", "begin"))
    sink(StepEvent("base image: debootstrap", "done", 151.2))
    assert ProgressFileReader(layout.progress_file).new_events() == [
        StepEvent("base image: debootstrap", "begin"),
        StepEvent("base image: debootstrap", "done", 151.2),
    ]


def test_plain_lines_say_each_step_with_its_time_and_a_long_one_is_still_running() -> None:
    out = io.StringIO()
    with ProgressPrinter(out, live=False, heartbeat=0.1) as printer:
        printer(StepEvent("apt-get install docker.io", "begin"))
        time.sleep(0.8)
        printer(StepEvent("apt-get install docker.io", "done", 0.8))
        printer.line("  ✓ backend 0.04 s")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  … apt-get install docker.io"
    assert "  ✓ apt-get install docker.io (0.8 s)" in lines
    assert any("still running after" in line for line in lines[1:-2])
    assert lines[-1] == "  ✓ backend 0.04 s"
    assert "\r" not in out.getvalue()  # no terminal control in a log


def test_a_terminal_gets_one_live_line_replaced_by_the_result() -> None:
    out = io.StringIO()
    with ProgressPrinter(out, live=True) as printer:
        printer(StepEvent("starting dockerd", "begin"))
        time.sleep(0.7)
        printer(StepEvent("starting dockerd", "failed", 0.7))
    text = out.getvalue()
    assert "\r\033[K  … starting dockerd" in text
    assert text.endswith("  ✗ failed: starting dockerd (0.7 s)\n")


def test_seconds_read_as_minutes_when_long() -> None:
    assert format_seconds(2.345) == "2.3 s"
    assert format_seconds(184) == "3 min 04 s"


#: Stands in for the daemon: reports a slow step in the progress file and its components
#: in the state file as the supervisor does, then stays quiet a while before it is running.
FAKE_DAEMON = """
import os, sys, time
from pathlib import Path
from emulator.daemon.config import StateLayout
from emulator.daemon.state import ComponentState, EmulatorState, process_start_time, write_state
from emulator.daemon.supervisor import progress_sink
from emulator.host.progress import set_sink, step

layout = StateLayout(Path(sys.argv[1]))
set_sink(progress_sink(layout))

def publish(phase, started):
    rows = [ComponentState("backend", started_seconds=0.1 if started else None),
            ComponentState("enclave", started_seconds=None)]
    # Its start time too, so that down() knows it for the daemon it started (and reaps it).
    starts = {str(os.getpid()): process_start_time(os.getpid())}
    write_state(layout.state_file, EmulatorState(phase, os.getpid(), str(layout.root), "moto", "container",
                                                 components=rows, pid_start_times=starts))

publish("starting", False)
with step("starting dockerd"):
    time.sleep(0.3)
publish("starting", True)
time.sleep(1.0)
publish("running", True)
time.sleep(30)  # until down() stops it
"""


def test_up_relays_the_daemons_steps_and_says_what_it_still_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_popen = subprocess.Popen

    def fake_daemon(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert command[1:3] == ["-m", "emulator.daemon.supervisor"]
        started: subprocess.Popen[bytes] = real_popen(
            [sys.executable, "-c", FAKE_DAEMON, command[-1]], **kwargs
        )
        return started

    monkeypatch.setattr(subprocess, "Popen", fake_daemon)
    monkeypatch.setattr(lifecycle, "QUIET_SECONDS", 0.4)
    lines: list[str] = []
    steps: list[StepEvent] = []
    state = lifecycle.up(EmulatorConfig(state_dir=tmp_path, port=0), echo=lines.append, on_step=steps.append)
    try:
        assert state.phase == "running"
        assert [(e.step, e.outcome) for e in steps] == [
            ("starting dockerd", "begin"),
            ("starting dockerd", "done"),
        ]
        assert steps[1].seconds >= 0.3
        assert lines[0].startswith("  ✓ backend ")
        assert any(
            line.startswith("  … still starting after") and line.endswith(": enclave") for line in lines
        )
    finally:
        lifecycle.down(StateLayout(tmp_path))
