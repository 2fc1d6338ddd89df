"""``status`` of a stopped emulator and the components ``logs`` offers."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.daemon.components.enclave import EnclaveComponent
from emulator.daemon.components.gateway import GatewayComponent
from emulator.daemon.components.parent import ParentComponent
from emulator.daemon.config import StateLayout
from emulator.daemon.state import ComponentState, EmulatorState, write_state
from emulator.tools.cli import LOG_COMPONENTS, build_parser, main

#: Above any Linux pid_max: no process has it.
GONE_PID = 1 << 30


def recorded(tmp_path: Path, phase: str) -> StateLayout:
    layout = StateLayout(tmp_path)
    state = EmulatorState(
        phase=phase,  # type: ignore[arg-type]
        daemon_pid=GONE_PID,
        state_dir=str(tmp_path),
        backend="moto",
        enclave_runtime="namespace",
        api_url="http://127.0.0.1:7450/v1",
        components=[ComponentState("gateway", "http://127.0.0.1:7450/v1", [], False, "daemon not running")],
    )
    write_state(layout.state_file, state)
    return layout


@pytest.mark.parametrize("phase", ["stopped", "running"])
def test_status_of_a_stopped_emulator_prints_no_api_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], phase: str
) -> None:
    # A recorded "running" state whose daemon is gone is reported as stopped too.
    recorded(tmp_path, phase)
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert out.startswith("phase: stopped")
    assert "API:" not in out


def test_logs_offers_only_components_that_write_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert "backend" not in LOG_COMPONENTS
    for name in LOG_COMPONENTS:
        assert parser.parse_args(["logs", name]).component == name
    with pytest.raises(SystemExit) as refused:
        parser.parse_args(["logs", "backend"])
    assert refused.value.code == 2
    assert "invalid choice: 'backend'" in capsys.readouterr().err


def test_the_components_offered_are_those_the_supervisor_and_processes_log_to() -> None:
    # Processes of their own (gateway, parent, enclave) and the daemon itself (supervisor).
    names = {EnclaveComponent.name, GatewayComponent.name, ParentComponent.name, "supervisor"}
    assert names == set(LOG_COMPONENTS)
