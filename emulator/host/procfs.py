"""The one reader of Linux's ``/proc``: process state, parentage, command lines, memory and CPU.

Every function answers ``None``, ``0`` or an empty value for a process that has gone (or a
field the kernel does not offer) instead of raising: the processes looked at here come and go
while they are read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` that the emulator uses (see proc(5))."""

    pid: int
    state: str
    ppid: int
    #: User and system CPU of the process's own threads, in clock ticks.
    utime: int
    stime: int
    #: When the process started, in clock ticks since boot; with the pid, it names one process.
    start_time: int

    @property
    def zombie(self) -> bool:
        return self.state == "Z"

    @property
    def cpu_seconds(self) -> float:
        return (self.utime + self.stime) / CLOCK_TICKS


def stat(pid: int) -> ProcessStat | None:
    """``/proc/<pid>/stat``, or ``None`` when there is no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces and parentheses.
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return ProcessStat(
            pid=pid,
            state=fields[0],
            ppid=int(fields[1]),
            utime=int(fields[11]),
            stime=int(fields[12]),
            start_time=int(fields[19]),
        )
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    found = stat(pid)
    return found.start_time if found is not None else None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    found = stat(pid) if pid > 0 else None
    return found is not None and not found.zombie


def pids() -> list[int]:
    """Every process on the machine."""
    with contextlib.suppress(OSError):
        return [int(entry.name) for entry in os.scandir(PROC) if entry.name.isdigit()]
    return []


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every process on the machine."""
    tree: dict[int, list[int]] = {}
    for pid in pids():
        found = stat(pid)
        if found is not None:
            tree.setdefault(found.ppid, []).append(pid)
    return tree


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list: a child belongs to the thread that forked it)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    result: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop(0)
        if child not in result:
            result.append(child)
            pending.extend(children(child))
    return result


def tree(roots: Iterable[int], children_of: Mapping[int, list[int]] | None = None) -> list[int]:
    """``roots`` and all their descendants, parents before their children."""
    links = children_of if children_of is not None else children_map()
    found: list[int] = []
    pending = [pid for pid in dict.fromkeys(roots) if pid > 0]
    while pending:
        pid = pending.pop(0)
        if pid not in found:
            found.append(pid)
            pending.extend(links.get(pid, []))
    return found


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty for a kernel thread or a process that has gone)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0") if raw else []


def pid_namespace(pid: int) -> str | None:
    """The PID namespace of ``pid`` (``pid:[<inode>]``), or ``None`` when it cannot be read."""
    try:
        return os.readlink(PROC / str(pid) / "ns" / "pid")
    except OSError:
        return None


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...), 0 where unknown."""
    return _kib_line(PROC / str(pid) / "status", key)


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among their users (0 where unknown)."""
    return _kib_line(PROC / str(pid) / "smaps_rollup", "Pss")


def _kib_line(path: Path, key: str) -> int:
    try:
        for line in path.read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its own threads, not its children)."""
    found = stat(pid)
    return found.cpu_seconds if found is not None else 0.0


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; (0, 0) where there is none."""
    try:
        with open(PROC / "stat", encoding="ascii") as handle:
            first = handle.readline().split()
    except OSError:
        return (0, 0)
    if not first or first[0] != "cpu":
        return (0, 0)
    values = [int(value) for value in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle, total)
