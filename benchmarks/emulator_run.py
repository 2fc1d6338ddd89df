"""Bringing an emulator up for a benchmark and down again, in a fresh state directory."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.procs import DAEMON, cpu_snapshot, emulator_processes
from emulator.aws.backends.config import backend_kind
from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.state import EmulatorState


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing installation, no engine)."""


@dataclass
class Started:
    state: EmulatorState
    config: EmulatorConfig
    #: Wall seconds of ``lifecycle.up`` in this process.
    up_seconds: float
    #: CPU seconds the emulator's processes had used when ``up`` returned (daemon's
    #: waited-for children, e.g. installers, excluded).
    up_cpu_seconds: float

    @property
    def state_dir(self) -> Path:
        return Path(self.config.state_dir)

    def processes(self) -> dict[str, list[int]]:
        return emulator_processes(self.state)

    def log_lines(self, component: str) -> list[str]:
        path = self.config.layout.log_file(component)
        try:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def fact(self, name: str) -> Any:
        return self.state.facts.get(name)


@contextlib.contextmanager
def running_emulator(backend: str) -> Iterator[Started]:
    """A cold emulator (new state directory, gateway on a free port); down and removed after."""
    # Short: Unix socket paths under the state directory must fit in sun_path.
    kind = backend_kind(backend)
    state_dir = Path(tempfile.mkdtemp(prefix=f"bench-{backend[:5]}-"))
    config = EmulatorConfig(state_dir=state_dir, backend=kind, port=0)
    began = time.perf_counter()
    try:
        state = lifecycle.up(config)
    except lifecycle.StartupFailed as exc:
        lifecycle.down(config.layout)
        shutil.rmtree(state_dir, ignore_errors=True)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Unavailable" in str(exc) or "not available" in str(exc):
            raise BackendUnavailable(first) from None
        raise
    up_seconds = time.perf_counter() - began
    try:
        cpu = sum(cpu_snapshot(emulator_processes(state)).values())
        yield Started(state=state, config=config, up_seconds=up_seconds, up_cpu_seconds=cpu)
    finally:
        lifecycle.down(config.layout)
        shutil.rmtree(state_dir, ignore_errors=True)


__all__ = ["DAEMON", "BackendUnavailable", "Started", "running_emulator"]
