"""The processes below a process, read from Linux's ``/proc`` (for leak checks and clean stops)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list: a child belongs to the thread that forked it)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in (_PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError):
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


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def kill_all(pids: list[int], timeout: float = 5.0) -> list[int]:
    """SIGKILL each of ``pids`` that still runs and wait for them to end; return any that did not."""
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    survivors = [pid for pid in pids if alive(pid)]
    while survivors and time.monotonic() < deadline:
        time.sleep(0.05)
        survivors = [pid for pid in survivors if alive(pid)]
    return survivors
