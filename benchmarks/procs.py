"""The emulator's processes as the benchmarks see them: memory and CPU from ``/proc``.

An emulator run is a daemon (AWS backend, KMS front, NSM, vsock-proxy and IMDS as
threads inside it, or LocalStack and DynamoDB Local as its children), the parent, the
enclave sandbox and the API gateway. :func:`emulator_processes` labels every live
process of a run: the pids its state file lists, and all their descendants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from emulator.daemon.state import EmulatorState
from emulator.host import procfs

DAEMON = "daemon"

# One reader of /proc for the emulator and its benchmarks.
children_map = procfs.children_map
rss_kib = procfs.rss_kib
pss_kib = procfs.pss_kib
cpu_seconds = procfs.cpu_seconds


def with_descendants(roots: Iterable[int], children: Mapping[int, list[int]] | None = None) -> list[int]:
    """``roots`` and all their descendants."""
    return procfs.tree(roots, children)


def emulator_processes(state: EmulatorState) -> dict[str, list[int]]:
    """label -> live pids of an emulator run.

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
            if pid not in claimed and procfs.stat(pid) is not None:
                claimed.add(pid)
                labelled.setdefault(label, []).append(pid)
    return labelled


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
