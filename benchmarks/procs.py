"""The emulator's processes as the benchmarks see them: memory and CPU from ``/proc``.

An emulator run is a daemon (AWS backend, KMS front, NSM, vsock-proxy and IMDS as
threads inside it, or LocalStack and DynamoDB Local as its children), the parent, the
enclave sandbox and the API gateway. :func:`emulator_processes` labels every live
process of a run: the pids its state file lists, and all their descendants.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_KIB = (os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096) // 1024
DAEMON = "daemon"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def children_map() -> dict[int, list[int]]:
    """ppid -> pids of every process on the machine."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def with_descendants(roots: Iterable[int], children: Mapping[int, list[int]] | None = None) -> list[int]:
    """``roots`` and all their descendants (bounded by the number of processes)."""
    tree = children if children is not None else children_map()
    seen: list[int] = []
    pending = [pid for pid in roots if pid > 0]
    limit = sum(len(v) for v in tree.values()) + len(pending)
    while pending and len(seen) <= limit:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.append(pid)
        pending.extend(tree.get(pid, []))
    return seen


def emulator_processes(state: Any) -> dict[str, list[int]]:
    """label -> live pids of an :class:`~emulator.state.EmulatorState`.

    Components that run inside the daemon (backend, KMS front, NSM...) share its pid and
    are counted once, as ``daemon``; a process is given to the first label that claims it.
    """
    tree = children_map()
    labelled: dict[str, list[int]] = {}
    claimed: set[int] = set()
    roots: list[tuple[str, list[int]]] = []
    for component in state.components:
        own = [pid for pid in component.pids if pid != state.daemon_pid]
        if own:
            roots.append((component.name, own))
    roots.append((DAEMON, [state.daemon_pid]))
    for label, pids in roots:
        for pid in with_descendants(pids, tree):
            if pid not in claimed and _stat_fields(pid) is not None:
                claimed.add(pid)
                labelled.setdefault(label, []).append(pid)
    return labelled


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among their users (0 where unknown)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (its own threads, not its children)."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def memory(processes: Mapping[str, list[int]]) -> dict[str, Any]:
    """Resident memory per label and in total, in MiB (RSS sum and PSS sum)."""
    per_label: dict[str, dict[str, float]] = {}
    for label, pids in processes.items():
        per_label[label] = {
            "processes": len(pids),
            "rss_mib": sum(rss_kib(pid) for pid in pids) / 1024,
            "pss_mib": sum(pss_kib(pid) for pid in pids) / 1024,
        }
    return {
        "rss_mib": sum(v["rss_mib"] for v in per_label.values()),
        "pss_mib": sum(v["pss_mib"] for v in per_label.values()),
        "processes": sum(int(v["processes"]) for v in per_label.values()),
        "by_component": per_label,
    }


def cpu_snapshot(processes: Mapping[str, list[int]]) -> dict[str, float]:
    """label -> CPU seconds used so far by the label's live processes."""
    return {label: sum(cpu_seconds(pid) for pid in pids) for label, pids in processes.items()}


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {label: max(0.0, after.get(label, 0.0) - before.get(label, 0.0)) for label in after}
