"""``up``, ``down`` and ``status`` as functions (the CLI and the pytest plugin use these).

``up`` first checks what it can before starting anything (the port is free, a named
LocalStack interpreter works), then starts the daemon (:mod:`emulator.daemon.supervisor`)
detached, follows its progress through the state file (components as they start) and
the progress file (slow steps inside them) and returns once every component is healthy. ``down`` asks
the daemon to stop (SIGTERM), waits for it, and if the daemon is gone or stuck kills
whatever processes the state file still lists, so no process, port or socket is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from emulator.aws.backends.config import LOCALSTACK_MIN_PYTHON, default_localstack_python
from emulator.aws.backends.interpreters import InterpreterNotFound, check_interpreter
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.control import control_request
from emulator.daemon.state import EmulatorState, pid_alive, read_state, same_process
from emulator.host.process import tail_file
from emulator.host.progress import ProgressFileReader, Sink, format_seconds
from emulator.nitro.preload import PreloadError, find_compiler

Echo = Callable[[str], None]
#: Seconds without a line after which ``up`` says what it is still waiting for.
QUIET_SECONDS = 15.0
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


class PortInUse(EmulatorError):
    """The gateway's port is taken: found before anything was started."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use; pass --port 0 or another port")
        self.port = port


class InvalidInterpreter(EmulatorError):
    """The interpreter named for LocalStack does not exist, does not run, or is too old."""


class NoCompiler(EmulatorError):
    """Device mode compiles the preload library, and this machine has no C compiler."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` as the gateway binds it (with SO_REUSEADDR,
    so a port only in TIME_WAIT counts as free, as it is to the gateway)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_before_start(config: EmulatorConfig) -> None:
    """What can fail fast, checked before any component starts (:class:`EmulatorError` otherwise)."""
    if config.port != 0 and not port_free(config.port):
        raise PortInUse(config.port)
    if config.enclave_devices:
        try:
            find_compiler()
        except PreloadError as exc:
            raise NoCompiler(f"{exc} [{exc.code}]; or run with --enclave-uds") from exc
    if config.backend == "localstack":
        python = config.localstack_python or default_localstack_python()
        if python is not None:
            try:
                check_interpreter(python, LOCALSTACK_MIN_PYTHON)
            except InterpreterNotFound as exc:
                raise InvalidInterpreter(str(exc)) from exc


def daemon_alive(state: EmulatorState) -> bool:
    return same_process(state.daemon_pid, state.pid_start_times.get(str(state.daemon_pid)))


def running_state(layout: StateLayout) -> EmulatorState | None:
    """The state of a live daemon in ``layout``, else ``None``."""
    state = read_state(layout.state_file)
    if state is None or state.phase not in ("starting", "running") or not daemon_alive(state):
        return None
    return state


def up(config: EmulatorConfig, echo: Echo | None = None, on_step: Sink | None = None) -> EmulatorState:
    """Start the emulator daemon and wait until it is healthy; return its state.

    ``echo`` gets a line per component as it starts (with its seconds), and one after
    :data:`QUIET_SECONDS` without news saying what is still awaited; ``on_step`` gets
    the daemon's slow steps (installing, building images) as they begin and end.
    """
    layout = config.layout
    existing = running_state(layout)
    if existing is not None:
        raise AlreadyRunning(existing)
    # A dead daemon's leftovers first: its gateway may be what holds the port.
    _cleanup_leftovers(layout)
    check_before_start(config)
    layout.ensure()
    layout.config_file.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
    for stale in (layout.state_file, layout.progress_file):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
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
    steps = ProgressFileReader(layout.progress_file)
    running_steps: set[str] = set()
    last_news = began
    timeout = config.startup_timeout
    if config.enclave_runtime == "container" or config.backend != "moto":
        # A first run installs software into the shared cache: the Docker engine and a base
        # image built with debootstrap, or LocalStack and DynamoDB Local.
        timeout = max(timeout, FIRST_RUN_TIMEOUT)
    deadline = began + timeout
    while True:
        state = read_state(layout.state_file)
        now = time.monotonic()
        for event in steps.new_events():
            last_news = now
            if event.outcome == "begin":
                running_steps.add(event.step)
            else:
                running_steps.discard(event.step)
            if on_step is not None:
                on_step(event)
        if state is not None and echo is not None:
            for component in state.components:
                if component.started_seconds is not None and component.name not in announced:
                    announced.add(component.name)
                    last_news = now
                    where = f"  {component.address}" if component.address else ""
                    echo(f"  ✓ {component.name:<14} {component.started_seconds:6.2f} s{where}")
            # A running step reports itself; otherwise say what the daemon is still doing.
            if not running_steps and now - last_news >= QUIET_SECONDS and state.phase == "starting":
                last_news = now
                waiting = [c.name for c in state.components if c.started_seconds is None]
                echo(f"  … still starting after {format_seconds(now - began)}: {', '.join(waiting)}")
        if state is not None and state.phase == "running":
            return state
        exited = daemon.poll() is not None
        if (state is not None and state.phase == "failed") or exited:
            _wait_child(layout.root, timeout=30)
            state = read_state(layout.state_file)
            reason = state.error if state is not None and state.error else "the daemon exited"
            if config.port != 0 and "Address already in use" in reason and not port_free(config.port):
                # Taken between the check and the gateway's bind.
                raise PortInUse(config.port)
            if "\n" in reason:
                # The reason carries the failed component's log already; the supervisor's repeats it.
                raise StartupFailed(f"{reason}\nsee {log_path}")
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


class StillRunning(EmulatorError):
    """``reset`` was asked of a running emulator."""


def persisted_paths(layout: StateLayout) -> list[Path]:
    """What ``up --persist`` keeps between runs: the backend's state (tables, keys) and the PKI."""
    return [layout.backend, layout.pki]


def reset(layout: StateLayout) -> list[Path]:
    """Delete the state ``up --persist`` keeps (vaults, audit, keys, PKI); return what was removed.

    Refused while a daemon of ``layout`` is alive. Logs, the configuration and the
    assembled enclave image (rebuilt the same from the sources) are kept.
    """
    state = read_state(layout.state_file)
    if state is not None and daemon_alive(state):
        raise StillRunning(
            f"the emulator in {layout.root} is running (phase {state.phase}); reset deletes its vaults "
            f"and keys, so stop it first: vault-emulator down --state-dir {layout.root}"
        )
    removed = []
    for path in persisted_paths(layout):
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
    return removed


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
