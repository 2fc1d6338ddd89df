"""Bringing an emulator up for a benchmark and down again, in a fresh state directory."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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


def measure_each(
    backends: Sequence[str],
    measure: Callable[[str], dict[str, Any]],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], bool]:
    """``measure`` every backend in turn; one that cannot run here, or fails, does not stop the others.

    Returns each backend's result (``{"backend", "skipped"}`` or ``{"backend", "error"}`` for
    those without one) and whether any failed. ``on_result`` sees each result as it comes.
    """
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for backend in backends:
        try:
            results[backend] = measure(backend)
        except BackendUnavailable as exc:
            results[backend] = {"backend": backend, "skipped": str(exc)}
            print(f"[{backend}] skipped: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - reported, and the other backends still run
            results[backend] = {"backend": backend, "error": f"{type(exc).__name__}: {exc}"}
            print(f"[{backend}] FAILED: {type(exc).__name__}: {exc}")
            failed = True
            continue
        if on_result is not None:
            on_result(results[backend])
    return results, failed


__all__ = ["DAEMON", "BackendUnavailable", "Started", "measure_each", "running_emulator"]
