"""State file, configuration and state directory layout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.state import (
    ComponentState,
    EmulatorState,
    pid_alive,
    process_start_time,
    read_state,
    same_process,
    write_state,
)


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    state = EmulatorState(
        phase="running",
        daemon_pid=os.getpid(),
        state_dir=str(tmp_path),
        backend="moto",
        enclave_runtime="namespace",
        api_url="http://127.0.0.1:1/v1",
        components=[ComponentState("gateway", "http://127.0.0.1:1/v1", [1, 2], True, "", "g.log", 0.5)],
        facts={"key_arn": "arn:aws:kms:us-east-1:123456789012:key/x"},
    )
    path = tmp_path / "state.json"
    write_state(path, state)
    loaded = read_state(path)
    assert loaded == state
    assert loaded is not None and loaded.component("gateway") == state.components[0]
    assert loaded.all_pids() == [os.getpid(), 1, 2]
    assert not list(tmp_path.glob(".state-*"))  # the temporary file was renamed away


def test_missing_or_foreign_state_reads_as_none(tmp_path: Path) -> None:
    assert read_state(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_state(tmp_path / "bad.json") is None
    (tmp_path / "old.json").write_text(json.dumps({"version": 0}))
    assert read_state(tmp_path / "old.json") is None


def test_process_identity_survives_pid_reuse_checks() -> None:
    child = subprocess.Popen(["sleep", "5"])
    start = process_start_time(child.pid)
    assert pid_alive(child.pid) and same_process(child.pid, start)
    assert start is not None and not same_process(child.pid, start + 1)
    child.kill()
    assert pid_alive(child.pid) is False or child.poll() is None  # zombie until reaped
    child.wait()
    assert not pid_alive(child.pid)
    assert not same_process(child.pid, start)


def test_config_validates_and_round_trips(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path / "s", backend="localstack", port=0)
    assert config.state_dir.is_absolute()
    assert EmulatorConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert config.instance_role_arn == "arn:aws:iam::123456789012:role/nitro-vault-instance-role"
    with pytest.raises(ValueError):
        EmulatorConfig(backend="aws")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EmulatorConfig(port=70000)
    with pytest.raises(ValueError):
        EmulatorConfig(enclave_cid=3)


def test_sockets_move_to_a_short_directory_when_the_state_dir_is_deep(tmp_path: Path) -> None:
    short = StateLayout(Path("/tmp/x"))
    assert short.vsock_dir == Path("/tmp/x/run/vsock")
    deep = StateLayout(tmp_path / ("d" * 90))
    assert len(str(deep.vsock_dir / "vsock-4294967295-65535.sock")) < 108
    assert deep.runtime_dir == StateLayout(tmp_path / ("d" * 90)).runtime_dir  # stable per state dir
    assert deep.runtime_dir != StateLayout(tmp_path / ("e" * 90)).runtime_dir
