"""``up``/``status``/``down`` through the CLI: detached daemon, nothing left behind, restartable.

Also measures a cold ``up`` and the resident memory of the whole emulator, printed in
the test output (``-s``) and attached to the report.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.daemon.state import pid_alive, read_state

BACKENDS = [b.strip() for b in os.environ.get("VAULT_E2E_LIFECYCLE_BACKENDS", "moto").split(",") if b.strip()]


def cli(state_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def rss_kib(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def port_listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_up_down_leaves_nothing_and_up_works_again(
    backend: str, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    state_dir = tmp_path / "state"
    for round_number in (1, 2):
        began = time.monotonic()
        result = cli(state_dir, "up", "--backend", backend, "--port", "0")
        elapsed = time.monotonic() - began
        assert result.returncode == 0, result.stdout + result.stderr
        assert "API:" in result.stdout
        state = read_state(state_dir / "state.json")
        assert state is not None and state.phase == "running"
        assert all(c.healthy for c in state.components), state.components

        status = cli(state_dir, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("backend", "enclave", "parent", "gateway", "kms-front", "nsm", "imds"):
            assert name in status.stdout

        processes = descendants(state.daemon_pid)
        memory = rss_kib(processes)
        ports = [
            int(c.address.split(":")[2].split("/")[0])
            for c in state.components
            if c.address.startswith("http")
        ]
        sockets = list(Path(state.runtime_dir).rglob("*.sock"))
        assert sockets and all(port_listening(p) for p in ports)
        print(
            f"\n[{backend}] round {round_number}: cold up {elapsed:.2f} s "
            f"(daemon reports {state.startup_seconds} s), {len(processes)} processes, "
            f"RSS {memory / 1024:.0f} MiB"
        )
        record_property(f"{backend}_up_seconds_{round_number}", round(elapsed, 2))
        record_property(f"{backend}_rss_mib_{round_number}", round(memory / 1024))

        down = cli(state_dir, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped" in down.stdout
        # An exited daemon may linger as a zombie until init reaps it (it was detached
        # from `up`, which exited long ago); it holds no port, socket or memory.
        assert not [pid for pid in processes if pid_alive(pid)], "processes survived down"
        assert not [port for port in ports if port_listening(port)], "ports still listening after down"
        assert not Path(state.runtime_dir).exists() and not [s for s in sockets if s.exists()]
        final = read_state(state_dir / "state.json")
        assert final is not None and final.phase == "stopped"


def test_a_second_up_reports_the_running_emulator(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    assert cli(state_dir, "up", "--port", "0").returncode == 0
    try:
        again = cli(state_dir, "up", "--port", "0")
        assert again.returncode == 0 and "already running" in again.stdout
        logs = cli(state_dir, "logs", "gateway", "-n", "200")
        assert logs.returncode == 0 and "serving" in logs.stdout
    finally:
        assert cli(state_dir, "down").returncode == 0
