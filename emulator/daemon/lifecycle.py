"""``up``, ``down`` and ``status`` as functions (the CLI and the pytest plugin use these).

``up`` starts the daemon (:mod:`emulator.daemon.supervisor`) detached, follows its progress
through the state file and returns once every component is healthy. ``down`` asks
the daemon to stop (SIGTERM), waits for it, and if the daemon is gone or stuck kills
whatever processes the state file still lists, so no process, port or socket is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.control import control_request
from emulator.daemon.state import EmulatorState, pid_alive, read_state, same_process
from emulator.host.process import tail_file

Echo = Callable[[str], None]
FIRST_RUN_TIMEOUT = 1200.0
#: A status request is answered from memory; a daemon slower than this is reported from its file.
STATUS_TIMEOUT = 10.0
#: Daemons started by this process, kept so ``down`` can reap them (no zombies).
_CHILDREN: dict[Path, subprocess.Popen[bytes]] = {}


class EmulatorError(RuntimeError):
    pass


class AlreadyRunning(EmulatorError):
    def __init__(self, state: EmulatorState) -> None:
        super().__init__(f"the emulator is already running in {state.state_dir} (API {state.api_url})")
        self.state = state


class StartupFailed(EmulatorError):
    pass


def daemon_alive(state: EmulatorState) -> bool:
    return same_process(state.daemon_pid, state.pid_start_times.get(str(state.daemon_pid)))


def running_state(layout: StateLayout) -> EmulatorState | None:
    """The state of a live daemon in ``layout``, else ``None``."""
    state = read_state(layout.state_file)
    if state is None or state.phase not in ("starting", "running") or not daemon_alive(state):
        return None
    return state


def up(config: EmulatorConfig, echo: Echo | None = None) -> EmulatorState:
    """Start the emulator daemon and wait until it is healthy; return its state."""
    layout = config.layout
    existing = running_state(layout)
    if existing is not None:
        raise AlreadyRunning(existing)
    _cleanup_leftovers(layout)
    layout.ensure()
    layout.config_file.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        layout.state_file.unlink()
    log_path = layout.log_file("supervisor")
    began = time.monotonic()
    with open(log_path, "ab") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "emulator.daemon.supervisor", "--state-dir", str(layout.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[layout.root] = daemon
    announced: set[str] = set()
    timeout = config.startup_timeout
    if config.enclave_runtime == "container" or config.backend != "moto":
        # A first run installs software into the shared cache: the Docker engine and a base
        # image built with debootstrap, or LocalStack and DynamoDB Local.
        timeout = max(timeout, FIRST_RUN_TIMEOUT)
    deadline = began + timeout
    while True:
        state = read_state(layout.state_file)
        if state is not None and echo is not None:
            for component in state.components:
                if component.started_seconds is not None and component.name not in announced:
                    announced.add(component.name)
                    where = f"  {component.address}" if component.address else ""
                    echo(f"  ✓ {component.name:<12} {component.started_seconds:6.2f} s{where}")
        if state is not None and state.phase == "running":
            return state
        exited = daemon.poll() is not None
        if (state is not None and state.phase == "failed") or exited:
            _wait_child(layout.root, timeout=30)
            state = read_state(layout.state_file)
            reason = state.error if state is not None and state.error else "the daemon exited"
            raise StartupFailed(f"{reason}\n--- {log_path} ---\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            down(layout)
            raise StartupFailed(f"not healthy after {timeout:.0f} s; see {log_path}")
        time.sleep(0.02)


def down(layout: StateLayout, timeout: float = 60.0) -> bool:
    """Stop the emulator of ``layout``; True if one was running."""
    state = read_state(layout.state_file)
    if state is None:
        _wait_child(layout.root, timeout=timeout)
        return False
    was_running = daemon_alive(state)
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.daemon_pid, signal.SIGTERM)
        _wait_gone(state.daemon_pid, layout.root, timeout)
    if daemon_alive(state):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.daemon_pid, signal.SIGKILL)
        _wait_gone(state.daemon_pid, layout.root, 5)
    _cleanup_leftovers(layout, state)
    return was_running


def _wait_child(root: Path, timeout: float) -> None:
    child = _CHILDREN.pop(root, None)
    if child is not None:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)


def _wait_gone(pid: int, root: Path, timeout: float) -> None:
    child = _CHILDREN.get(root)
    if child is not None and child.pid == pid:
        try:
            child.wait(timeout=timeout)
            _CHILDREN.pop(root, None)
        except subprocess.TimeoutExpired:
            pass
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _cleanup_leftovers(layout: StateLayout, state: EmulatorState | None = None) -> None:
    """Kill processes a dead daemon left behind and remove its sockets."""
    state = state or read_state(layout.state_file)
    if state is not None:
        for pid in state.all_pids():
            if pid != state.daemon_pid and same_process(pid, state.pid_start_times.get(str(pid))):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if state.runtime_dir:
            shutil.rmtree(state.runtime_dir, ignore_errors=True)
    shutil.rmtree(layout.runtime_dir, ignore_errors=True)


def status(layout: StateLayout) -> EmulatorState | None:
    """Live status from the daemon, or the recorded state if it cannot answer."""
    state = read_state(layout.state_file)
    if state is None:
        return None
    if daemon_alive(state) and state.phase == "running":
        with contextlib.suppress(OSError, ValueError):
            reply = control_request(layout, {"op": "status"}, timeout=STATUS_TIMEOUT)
            if reply.get("ok"):
                return EmulatorState.from_json(reply["state"])
    if not daemon_alive(state) and state.phase in ("starting", "running", "stopping"):
        state.phase = "stopped"
        for component in state.components:
            component.healthy = False
            component.detail = "daemon not running"
    return state


def _tail(path: Path, lines: int = 30) -> str:
    return tail_file(path, lines)
