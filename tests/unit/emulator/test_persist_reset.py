"""``up --persist`` reaches the configuration; ``reset`` deletes the kept state, never while running."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.aws.backends.moto_state import SNAPSHOT_NAME
from emulator.daemon import lifecycle
from emulator.daemon.components.backend import BackendComponent
from emulator.daemon.components.base import Context
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.state import EmulatorState, process_start_time, write_state
from emulator.tools.cli import build_parser, config_from_args, main

#: Above any Linux pid_max: no process has it.
GONE_PID = 1 << 30


def _record(layout: StateLayout, phase: str, pid: int) -> None:
    start = process_start_time(pid)
    write_state(
        layout.state_file,
        EmulatorState(
            phase=phase,  # type: ignore[arg-type]
            daemon_pid=pid,
            state_dir=str(layout.root),
            backend="moto",
            enclave_runtime="namespace",
            api_url="http://127.0.0.1:7450/v1",
            pid_start_times={str(pid): start} if start is not None else {},
        ),
    )


def _persisted(layout: StateLayout) -> None:
    layout.ensure()
    (layout.backend / "moto-state.pickle").write_bytes(b"state")
    (layout.pki / "root.key").write_bytes(b"key")
    layout.log_file("supervisor").write_text("log\n", encoding="utf-8")


def test_up_takes_persist_and_the_config_keeps_it(tmp_path: Path) -> None:
    args = build_parser().parse_args(["up", "--persist", "--state-dir", str(tmp_path)])
    config = config_from_args(args)
    assert config.persist is True
    assert EmulatorConfig.from_json(config.to_json()) == config
    plain = config_from_args(build_parser().parse_args(["up", "--state-dir", str(tmp_path)]))
    assert plain.persist is False
    # A config file written before the option existed still loads, without persistence.
    legacy = {key: value for key, value in plain.to_json().items() if key != "persist"}
    assert EmulatorConfig.from_json(legacy).persist is False


def test_reset_removes_the_backend_state_and_the_pki_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = StateLayout(tmp_path)
    _persisted(layout)
    _record(layout, "stopped", GONE_PID)
    assert main(["reset", "--state-dir", str(tmp_path)]) == 0
    assert "removed the persisted state" in capsys.readouterr().out
    assert not layout.backend.exists() and not layout.pki.exists()
    assert layout.log_file("supervisor").is_file() and layout.config_file.parent.is_dir()

    assert main(["reset", "--state-dir", str(tmp_path)]) == 0
    assert "no persisted state" in capsys.readouterr().out


def test_reset_refuses_while_the_daemon_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout = StateLayout(tmp_path)
    _persisted(layout)
    # This test's own process stands in for a live daemon.
    _record(layout, "running", os.getpid())
    with pytest.raises(lifecycle.StillRunning, match="vault-emulator down"):
        lifecycle.reset(layout)
    assert main(["reset", "--state-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "is running" in error and "vault-emulator down" in error
    assert (layout.backend / "moto-state.pickle").is_file() and (layout.pki / "root.key").is_file()


def test_the_backend_component_persists_under_the_state_directory(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path, persist=True)
    context = Context(config, config.layout)
    config.layout.ensure()
    component = BackendComponent(context)
    component.start()
    try:
        assert component.backend.config.persist is True
        assert component.backend.config.state_dir == config.layout.backend
        assert context.facts["persist"] is True
    finally:
        component.stop()
    assert (config.layout.backend / SNAPSHOT_NAME).is_file()
