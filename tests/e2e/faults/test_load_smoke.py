"""A short run of ``python -m benchmarks.load`` against the session's emulator: no errors, a full report.

Not a performance assertion: the figures are printed (``-s``) and recorded, the test only
checks that the load completes without a single error and reports what it promises.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.daemon.state import EmulatorState

CLIENTS = 4
SECONDS = 5


def test_short_load_run_has_no_errors(
    stack: EmulatorState, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    output = tmp_path / "load.json"
    argv = ["--clients", str(CLIENTS), "--duration", str(SECONDS), "--max-requests", "5000"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load",
            *argv,
            "--state-dir",
            stack.state_dir,
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=SECONDS + 60,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(output.read_text())
    assert report["errors"] == 0, report["error_samples"]
    assert report["config"]["clients"] == CLIENTS and report["unfinished_clients"] == 0
    assert SECONDS <= report["seconds"] < SECONDS + 20
    assert report["completed"] == report["requests"] > 0
    for name in ("create", "decrypt"):
        operation = report["operations"][name]
        assert operation["count"] > 0 and operation["errors"] == 0
        assert 0 < operation["p50_ms"] <= operation["p99_ms"] <= operation["max_ms"]
    memory = report["memory"]
    assert memory["rss_kib_before"] > 0 and memory["rss_kib_after"] > 0
    assert memory["processes_after"] >= 4  # daemon, gateway, parent, enclave sandbox at least
    record_property("load_throughput_per_s", report["throughput_per_s"])
    record_property("load_rss_mib_after", round(memory["rss_kib_after"] / 1024))
