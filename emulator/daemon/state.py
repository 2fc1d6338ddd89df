"""The JSON state file through which ``up``, ``status``, ``down`` and the daemon talk.

The daemon is the only writer; it replaces the file atomically (write to a temporary
file, then ``rename``) so a reader never sees half a document.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from emulator.daemon.config import StateLayout
from emulator.host import procfs

Phase = Literal["starting", "running", "stopping", "stopped", "failed"]
STATE_VERSION = 1


@dataclass
class ComponentState:
    """One row of the status table."""

    name: str
    address: str = ""
    pids: list[int] = field(default_factory=list)
    healthy: bool = False
    detail: str = ""
    log: str = ""
    started_seconds: float | None = None


@dataclass
class EmulatorState:
    phase: Phase
    daemon_pid: int
    state_dir: str
    backend: str
    enclave_runtime: str
    api_url: str = ""
    runtime_dir: str = ""
    error: str = ""
    startup_seconds: float | None = None
    components: list[ComponentState] = field(default_factory=list)
    #: Facts that clients need (region, table, key ARN, backend endpoint, test principals).
    facts: dict[str, Any] = field(default_factory=dict)
    #: pid -> kernel start time, so a pid reused by an unrelated process is never signalled.
    pid_start_times: dict[str, int] = field(default_factory=dict)
    version: int = STATE_VERSION

    @property
    def layout(self) -> StateLayout:
        """The layout of the state directory this state was recorded in."""
        return StateLayout(Path(self.state_dir))

    def component(self, name: str) -> ComponentState | None:
        return next((c for c in self.components if c.name == name), None)

    def all_pids(self) -> list[int]:
        pids = [self.daemon_pid]
        for component in self.components:
            pids.extend(component.pids)
        return pids

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorState:
        components = [ComponentState(**c) for c in data.get("components", [])]
        known = set(cls.__dataclass_fields__) - {"components"}
        values = {key: value for key, value in data.items() if key in known}
        return cls(components=components, **values)


def write_state(path: Path, state: EmulatorState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> EmulatorState | None:
    """The recorded state, or ``None`` when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return None
    return EmulatorState.from_json(data)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or ``None``."""
    return procfs.start_time(pid)


def same_process(pid: int, start_time: int | None) -> bool:
    """True if ``pid`` is alive and is the process that had ``start_time``."""
    return pid_alive(pid) and (start_time is None or process_start_time(pid) == start_time)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` names a live (not zombie) process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells them apart.
    found = procfs.stat(pid)
    return found is None or not found.zombie
