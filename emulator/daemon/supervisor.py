"""The emulator daemon: starts every component, watches them, stops them all.

``vault-emulator up`` runs ``python -m emulator.daemon.supervisor --state-dir DIR`` detached
(own session, output to ``logs/supervisor.log``). The daemon starts the components in
dependency order (independent ones in parallel), records progress and the final
status table in ``state.json``, then answers a control socket (``status``,
``relaunch-enclave``, ``fault``, ``stop``, and for the dashboard the read-only ``pcrs`` and
``decisions``; see :mod:`emulator.daemon.control`) until
SIGTERM/SIGINT or ``stop``, and finally stops the components in reverse order and
removes its sockets. ``down`` sends SIGTERM and waits; nothing the daemon started
survives it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emulator.aws.gateway.dashboard import (
    DEFAULT_DECISIONS,
    MAX_DECISIONS,
    DecisionsView,
    PcrsView,
    checked_limit,
    decision_report,
    pcr_report,
    to_json,
)
from emulator.daemon.components import EmulatorParts, build_components
from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.control import Reply, Request, listen_control, serve_control
from emulator.daemon.graph import LaunchError, Node, launch, stop_all
from emulator.daemon.state import ComponentState, EmulatorState, Phase, process_start_time, write_state
from emulator.faults.catalogue import FaultError, FaultServices
from emulator.faults.injector import FaultInjector
from emulator.host.progress import ProgressFile, Sink, StepEvent, set_sink

log = logging.getLogger("emulator.daemon.supervisor")
ComponentFactory = Callable[[Context], EmulatorParts]
#: Seconds between liveness checks of the running components.
WATCH_INTERVAL = 2.0


class Supervisor:
    def __init__(
        self, config: EmulatorConfig, layout: StateLayout, factory: ComponentFactory = build_components
    ) -> None:
        self.config = config
        self.layout = layout
        self.context = Context(config, layout)
        self.parts = factory(self.context)
        self.components: list[Component] = self.parts.components
        self.by_name = {component.name: component for component in self.components}
        self.started: list[str] = []
        self.durations: dict[str, float] = {}
        self.phase: Phase = "starting"
        self.error = ""
        self.startup_seconds: float | None = None
        self._lock = threading.RLock()
        #: Created by the first ``fault`` request (see :mod:`emulator.faults.injector`).
        self._faults: FaultInjector | None = None

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

        def stop_one(name: str) -> None:
            component = self.by_name[name]
            try:
                component.stop()
                log.info("%s stopped", name)
            except Exception:
                log.exception("stopping %s failed", name)
            with self._lock:
                self.started.remove(name)

        # Each component once nothing that needs it still runs; independent ones side by side.
        stop_all(list(reversed(order)), {name: self.by_name[name].needs for name in order}, stop_one)
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
        with self._lock:
            result = self.parts.enclave.relaunch({k: v.encode() for k, v in (overrides or {}).items()})
        self.publish(live=True)
        return result.to_json()

    def services(self) -> FaultServices:
        """The running services, by the interface faults use (``FaultHost`` of the catalogue)."""
        parts = self.parts
        front = parts.kms_front.running_front
        started = set(self.started)
        return FaultServices(
            kms_hooks=front.faults if front is not None else None,
            imds=parts.imds.running_server,
            dynamodb_proxy=parts.dynamodb_proxy.running_proxy,
            parent=parts.parent if parts.parent.name in started else None,
            enclave=parts.enclave if parts.enclave.name in started else None,
        )

    def fault(self, request: Request) -> Reply:
        """Switch a fault of the catalogue on or off (:mod:`emulator.faults.injector`)."""
        if self.phase != "running":
            return {"ok": False, "error": f"faults need a running emulator (phase: {self.phase})"}
        if self._faults is None:
            self._faults = FaultInjector(self)
        try:
            return {"ok": True, "result": self._faults.handle(request)}
        except FaultError as exc:
            return {"ok": False, "error": str(exc)}

    def pcrs(self) -> PcrsView:
        """The PCRs the NSM attests for the running enclave, beside those the key policy pins (read-only)."""
        parts = self.parts
        with self._lock:
            enclave_id = parts.enclave.enclave_id if parts.enclave.name in self.started else ""
            nsm = parts.nsm.running_service
            policy = parts.provision.provisioned.key_policy if parts.provision.name in self.started else None
        measured: dict[int, bytes] = {}
        detail = "" if enclave_id else "no enclave is running"
        if nsm is not None and enclave_id:
            try:
                measured = nsm.pcrs(enclave_id)
            except KeyError:
                detail = "the NSM has no enclave registered (killed, not yet relaunched)"
        return pcr_report(enclave_id, measured, policy, detail)

    def decisions(self, limit: object) -> DecisionsView:
        """The KMS front's recent decisions, newest first (read-only)."""
        count = checked_limit(limit, DEFAULT_DECISIONS, MAX_DECISIONS)
        front = self.parts.kms_front.running_front
        if front is None:
            return decision_report(None, count, "the KMS front is not running")
        return decision_report(front.decisions, count)

    def handle(self, request: Request, stop: threading.Event) -> Reply:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "state": self.snapshot(live=True).to_json()}
        if op == "pcrs":
            return {"ok": True, "result": to_json(self.pcrs())}
        if op == "decisions":
            try:
                return {"ok": True, "result": to_json(self.decisions(request.get("limit")))}
            except ValueError as exc:
                return {"ok": False, "error": str(exc)}
        if op == "relaunch-enclave":
            return {"ok": True, "result": self.relaunch_enclave(request.get("overrides"))}
        if op == "fault":
            return self.fault(request)
        if op == "stop":
            stop.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown operation {op!r}"}


def progress_sink(layout: StateLayout) -> Sink:
    """Slow steps to the progress file (``up`` relays it) and to the supervisor's log."""
    record = ProgressFile(layout.progress_file)

    def sink(event: StepEvent) -> None:
        if event.outcome == "begin":
            log.info("%s ...", event.step)
        else:
            log.info("%s: %s in %.1f s", event.step, event.outcome, event.seconds)
        record(event)

    return sink


def run_daemon(
    config: EmulatorConfig, layout: StateLayout, factory: ComponentFactory = build_components
) -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    supervisor = Supervisor(config, layout, factory)
    layout.ensure()
    set_sink(progress_sink(layout))
    # Listening before start() publishes "running": a client that sees that phase
    # finds the socket (its request waits in the backlog until serving begins).
    control = listen_control(layout.control_socket)
    try:
        supervisor.start(cancel=stop)
    except LaunchError:
        control.close()
        layout.control_socket.unlink(missing_ok=True)
        return 1
    try:
        serve_control(
            layout.control_socket,
            lambda request: supervisor.handle(request, stop),
            stop.is_set,
            tick=lambda: supervisor.publish(live=True),
            tick_interval=WATCH_INTERVAL,
            server=control,
        )
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
    return run_daemon(config, layout)


if __name__ == "__main__":
    sys.exit(main())
