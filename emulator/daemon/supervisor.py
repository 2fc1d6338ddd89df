"""The emulator daemon: starts every component, watches them, stops them all.

``vault-emulator up`` runs ``python -m emulator.daemon.supervisor --state-dir DIR`` detached
(own session, output to ``logs/supervisor.log``). The daemon starts the components in
dependency order (independent ones in parallel), records progress and the final
status table in ``state.json``, then answers a control socket (``status``,
``relaunch-enclave``, ``fault``, ``stop``) until SIGTERM/SIGINT or ``stop``, and finally stops
the components in reverse order and removes its sockets. ``down`` sends SIGTERM and
waits; nothing the daemon started survives it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.graph import LaunchError, Node, launch
from emulator.daemon.state import ComponentState, EmulatorState, Phase, process_start_time, write_state

log = logging.getLogger("emulator.daemon.supervisor")
ComponentFactory = Callable[[Context], list[Component]]
#: Seconds between liveness checks of the running components.
WATCH_INTERVAL = 2.0
CONTROL_TIMEOUT = 60.0


class Supervisor:
    def __init__(self, config: EmulatorConfig, factory: ComponentFactory | None = None) -> None:
        self.config = config
        self.layout: StateLayout = config.layout
        self.context = Context(config)
        if factory is None:
            from emulator.daemon.components import build_components

            factory = build_components
        self.components: list[Component] = factory(self.context)
        self.by_name = {component.name: component for component in self.components}
        self.started: list[str] = []
        self.durations: dict[str, float] = {}
        self.phase: Phase = "starting"
        self.error = ""
        self.startup_seconds: float | None = None
        self._lock = threading.RLock()
        #: Created by the first ``fault`` request (see :mod:`emulator.faults.injector`).
        self._faults: Any = None

    # -- state -------------------------------------------------------------------------

    def snapshot(self, live: bool = False) -> EmulatorState:
        with self._lock:
            rows = []
            for component in self.components:
                up = component.name in self.started
                health = component.health() if (live and up) else Health(up, "" if up else "not started")
                rows.append(
                    ComponentState(
                        name=component.name,
                        address=component.address() if up else "",
                        pids=(component.pids() or ([os.getpid()] if component.runs_in_daemon else []))
                        if up
                        else [],
                        healthy=health.ok,
                        detail=health.detail,
                        log=str(component.log_path) if not component.is_step else "",
                        started_seconds=self.durations.get(component.name),
                    )
                )
            starts = {}
            for pid in [os.getpid(), *(pid for row in rows for pid in row.pids)]:
                start = process_start_time(pid)
                if start is not None:
                    starts[str(pid)] = start
            return EmulatorState(
                pid_start_times=starts,
                phase=self.phase,
                daemon_pid=os.getpid(),
                state_dir=str(self.layout.root),
                backend=self.config.backend,
                enclave_runtime=self.config.enclave_runtime,
                api_url=str(self.context.facts.get("api_url", "")),
                runtime_dir=str(self.layout.runtime_dir),
                error=self.error,
                startup_seconds=self.startup_seconds,
                components=rows,
                facts=dict(self.context.facts),
            )

    def publish(self, live: bool = False) -> None:
        write_state(self.layout.state_file, self.snapshot(live=live))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, cancel: threading.Event | None = None) -> None:
        began = time.monotonic()
        self.layout.ensure()
        self.publish()

        def started(name: str, seconds: float) -> None:
            with self._lock:
                self.started.append(name)
                self.durations[name] = round(seconds, 3)
            log.info("%s started in %.2f s", name, seconds)
            self.publish()

        nodes = [Node(c.name, c.needs, c.start) for c in self.components]
        try:
            for component in self.components:
                try:
                    component.prestart()
                except Exception as exc:
                    raise LaunchError(component.name, exc) from exc
            launch(nodes, on_started=started, cancel=cancel)
        except LaunchError as exc:
            with self._lock:
                self.phase = "failed"
                self.error = str(exc)
            log.error("startup failed: %s", exc)
            self.stop(final_phase="failed")
            raise
        with self._lock:
            self.phase = "running"
            self.startup_seconds = round(time.monotonic() - began, 3)
        log.info("emulator running after %.2f s: %s", self.startup_seconds, self.context.facts.get("api_url"))
        self.publish(live=True)

    def stop(self, final_phase: Phase = "stopped") -> None:
        with self._lock:
            if self.phase != "failed":
                self.phase = "stopping"
            order = list(reversed(self.started))
        if self._faults is not None:
            # A fault can hold a component where stop() cannot reach it (a SIGSTOPped parent).
            with contextlib.suppress(Exception):
                self._faults.release()
        with contextlib.suppress(OSError):
            self.publish()
        for name in order:
            component = self.by_name[name]
            try:
                component.stop()
                log.info("%s stopped", name)
            except Exception:
                log.exception("stopping %s failed", name)
            with self._lock:
                self.started.remove(name)
        # Components that failed half-way may hold resources too; stop() is idempotent.
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                component.stop()
        shutil.rmtree(self.layout.runtime_dir, ignore_errors=True)
        with self._lock:
            self.phase = final_phase
        with contextlib.suppress(OSError):
            self.publish()

    # -- control -----------------------------------------------------------------------

    def relaunch_enclave(self, overrides: dict[str, str] | None) -> dict[str, Any]:
        """Replace the running enclave with one launched from an image with ``overrides``."""
        enclave = self.by_name.get("enclave")
        relaunch = getattr(enclave, "relaunch", None)
        if relaunch is None:
            raise RuntimeError("this emulator has no enclave to relaunch")
        with self._lock:
            result: dict[str, Any] = relaunch({k: v.encode() for k, v in (overrides or {}).items()})
        self.publish(live=True)
        return result

    def fault(self, request: dict[str, Any]) -> dict[str, Any]:
        """Switch a fault of the catalogue on or off (:mod:`emulator.faults.injector`)."""
        from emulator.faults.catalogue import FaultError
        from emulator.faults.injector import FaultInjector

        if self.phase != "running":
            return {"ok": False, "error": f"faults need a running emulator (phase: {self.phase})"}
        if self._faults is None:
            self._faults = FaultInjector(self)
        try:
            return {"ok": True, "result": self._faults.handle(request)}
        except FaultError as exc:
            return {"ok": False, "error": str(exc)}

    def handle(self, request: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "state": self.snapshot(live=True).to_json()}
        if op == "relaunch-enclave":
            return {"ok": True, "result": self.relaunch_enclave(request.get("overrides"))}
        if op == "fault":
            return self.fault(request)
        if op == "stop":
            stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown operation {op!r}"}


def serve_control(supervisor: Supervisor, stop: threading.Event) -> None:
    """Answer control requests (one JSON line in, one out) until ``stop`` is set."""
    path = supervisor.layout.control_socket
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(8)
    server.settimeout(0.5)
    next_watch = time.monotonic() + WATCH_INTERVAL
    try:
        while not stop.is_set():
            if time.monotonic() >= next_watch:
                next_watch = time.monotonic() + WATCH_INTERVAL
                with contextlib.suppress(Exception):
                    supervisor.publish(live=True)
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(CONTROL_TIMEOUT)
                try:
                    request = json.loads(_read_line(connection))
                    reply = supervisor.handle(request, stop)
                except Exception as exc:
                    log.exception("control request failed")
                    reply = {"ok": False, "error": str(exc)}
                with contextlib.suppress(OSError):
                    connection.sendall(json.dumps(reply).encode() + b"\n")
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _read_line(connection: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def control_request(layout: StateLayout, request: dict[str, Any], timeout: float = CONTROL_TIMEOUT) -> Any:
    """Send one control request to a running daemon and return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(layout.control_socket))
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(_read_line(sock))
    finally:
        sock.close()


def run_daemon(config: EmulatorConfig, factory: ComponentFactory | None = None) -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    supervisor = Supervisor(config, factory)
    try:
        supervisor.start(cancel=stop)
    except LaunchError:
        return 1
    try:
        serve_control(supervisor, stop)
    finally:
        supervisor.stop()
    log.info("emulator stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.daemon.supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    layout = StateLayout(args.state_dir.absolute())
    config = EmulatorConfig.from_json(json.loads(layout.config_file.read_text(encoding="utf-8")))
    return run_daemon(config)


if __name__ == "__main__":
    sys.exit(main())
