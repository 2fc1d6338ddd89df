"""Child processes that are always stopped and reaped.

Every process the emulator starts gets its own session (so its whole process group
can be signalled, children included), writes to a log file in the state directory,
and is stopped with SIGTERM, then SIGKILL after a grace period, then waited for so no
zombie is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emulator.host import procfs


class StartupError(RuntimeError):
    """A component did not become healthy."""


@dataclass
class ManagedProcess:
    """A child process in its own process group with its output in ``log_path``."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path | None = None
    stop_timeout: float = 5.0
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                env=dict(self.env),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``stop_timeout``, reap the leader."""
        if self.popen is None:
            return
        popen = self.popen
        pgid = popen.pid  # start_new_session makes the leader's pid the group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            popen.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            popen.wait(timeout=self.stop_timeout)
        # Members of the group that outlived the leader (e.g. a grandchild) go too.
        _signal_group(pgid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        return tail_file(self.log_path, lines)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def tail_file(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            data = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for programs that cannot report the port they bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unix_socket_open(path: Path, timeout: float = 0.2) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    alive: Callable[[], bool] | None = None,
    on_fail: Callable[[], str] | None = None,
) -> None:
    """Poll ``check`` until it is true; fail after ``timeout`` or as soon as ``alive()`` is false."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and not alive():
            detail = on_fail() if on_fail else ""
            raise StartupError(f"{what}: the process exited during startup\n{detail}".rstrip())
        if time.monotonic() >= deadline:
            detail = on_fail() if on_fail else ""
            raise StartupError(f"{what}: not ready after {timeout:.0f} s\n{detail}".rstrip())
        time.sleep(interval)
        interval = min(interval * 1.5, 0.25)


def kill_all(pids: list[int], timeout: float = 5.0) -> list[int]:
    """SIGKILL each of ``pids`` that still runs and wait for them to end; return any that did not."""
    for pid in pids:
        if procfs.alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    survivors = [pid for pid in pids if procfs.alive(pid)]
    while survivors and time.monotonic() < deadline:
        time.sleep(0.05)
        survivors = [pid for pid in survivors if procfs.alive(pid)]
    return survivors
