"""What ``up`` checks before it starts anything: a free port, a usable LocalStack interpreter."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.aws.backends.config import LOCALSTACK_PYTHON_ENV, LocalStackSettings
from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.tools.cli import EXIT_BAD_OPTION, EXIT_PORT_IN_USE, build_parser, config_from_args, main

OLDER_THAN_LOCALSTACK_NEEDS = sys.version_info[:2] < (3, 13)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


def test_a_busy_port_is_reported_before_anything_starts(busy_port: int, tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path / "state", port=busy_port)
    with pytest.raises(lifecycle.PortInUse) as caught:
        lifecycle.up(config)
    assert str(caught.value) == f"port {busy_port} is in use; pass --port 0 or another port"
    # No daemon was started: it would have written its config, state and log first.
    assert not config.layout.config_file.exists()
    assert not config.layout.state_file.exists()
    assert not config.layout.log_file("supervisor").exists()


def test_the_cli_says_so_with_its_own_exit_code_and_no_traceback(
    busy_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["up", "--port", str(busy_port), "--state-dir", str(tmp_path / "state")])
    captured = capsys.readouterr()
    assert status == EXIT_PORT_IN_USE == 4
    assert f"error: port {busy_port} is in use; pass --port 0 or another port" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert "✓" not in captured.err  # no component started


def test_a_freed_port_and_port_zero_pass() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    assert lifecycle.port_free(port)
    lifecycle.check_before_start(EmulatorConfig(port=0))


def test_localstack_python_comes_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOCALSTACK_PYTHON_ENV, raising=False)
    assert config_from_args(build_parser().parse_args(["up"])).localstack_python is None
    explicit = build_parser().parse_args(["up", "--localstack-python", "py/bin/python3.13"])
    assert config_from_args(explicit).localstack_python == Path("py/bin/python3.13").absolute()
    monkeypatch.setenv(LOCALSTACK_PYTHON_ENV, str(tmp_path / "env-python"))
    from_env = config_from_args(build_parser().parse_args(["up"]))
    assert from_env.localstack_python == tmp_path / "env-python"
    assert LocalStackSettings().python == tmp_path / "env-python"
    # The option wins over the environment; doctor takes it too.
    assert build_parser().parse_args(["doctor", "--localstack-python", "/x"]).localstack_python == Path("/x")


def test_the_config_keeps_the_interpreter_as_a_path(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path, localstack_python=Path("rel/python3.13"))
    assert config.localstack_python == Path("rel/python3.13").absolute()
    restored = EmulatorConfig.from_json(config.to_json())
    assert restored == config and isinstance(restored.localstack_python, Path)
    assert EmulatorConfig.from_json(EmulatorConfig(state_dir=tmp_path).to_json()).localstack_python is None


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _plain_file(path: Path) -> Path:
    path.write_text("", encoding="utf-8")
    path.chmod(0o644)
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent", "it does not exist"),
        (lambda d: d, "it is a directory"),
        (lambda d: _plain_file(d / "plain"), "it is not executable"),
        (lambda d: _script(d / "python3.13", "exit 1"), "it does not run as a Python interpreter"),
    ],
)
def test_an_unusable_interpreter_is_refused_with_its_reason(
    make: Callable[[Path], Path], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    python = make(tmp_path)
    argv = ["up", "--backend", "localstack", "--localstack-python", str(python), "--port", "0"]
    status = main([*argv, "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert status == EXIT_BAD_OPTION
    assert f"{python} is not a working Python >= 3.13: {reason}" in err
    assert "uv python install 3.13" in err and "VAULT_LOCALSTACK_PYTHON" in err
    assert "Traceback" not in err
    assert not (tmp_path / "state" / "config.json").exists()


@pytest.mark.skipif(not OLDER_THAN_LOCALSTACK_NEEDS, reason="needs an interpreter older than 3.13")
def test_an_older_interpreter_is_refused_with_its_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["up", "--backend", "localstack", "--localstack-python", sys.executable, "--port", "0"]
    assert main([*argv, "--state-dir", str(tmp_path / "state")]) == EXIT_BAD_OPTION
    version = ".".join(map(str, sys.version_info[:3]))
    assert f"it is Python {version}" in capsys.readouterr().err


def test_other_backends_ignore_a_stale_environment_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCALSTACK_PYTHON_ENV, str(tmp_path / "absent"))
    lifecycle.check_before_start(EmulatorConfig(state_dir=tmp_path, port=0))
    with pytest.raises(lifecycle.InvalidInterpreter, match="does not exist"):
        lifecycle.check_before_start(EmulatorConfig(state_dir=tmp_path, port=0, backend="localstack"))


#: Stands in for a daemon whose gateway failed: records the failure as the supervisor does.
FAILED_DAEMON = """
import os, sys
from pathlib import Path
from emulator.daemon.config import StateLayout
from emulator.daemon.state import EmulatorState, write_state

layout = StateLayout(Path(sys.argv[1]))
print("supervisor: the same traceback again", flush=True)
error = "gateway: the process exited during startup\\nTraceback ...\\nOSError: " + sys.argv[2]
write_state(layout.state_file, EmulatorState("failed", os.getpid(), str(layout.root), "moto", "namespace",
                                             error=error))
"""


def _fail_like_the_gateway(monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    real_popen = subprocess.Popen

    def failed_daemon(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        assert command[1:3] == ["-m", "emulator.daemon.supervisor"]
        started: subprocess.Popen[bytes] = real_popen(
            [sys.executable, "-c", FAILED_DAEMON, command[-1], error], **kwargs
        )
        return started

    monkeypatch.setattr(subprocess, "Popen", failed_daemon)


def test_a_port_taken_after_the_check_still_reads_as_port_in_use(
    busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The port was free when checked; another program bound it before the gateway did.
    monkeypatch.setattr(lifecycle, "check_before_start", lambda config: None)
    _fail_like_the_gateway(monkeypatch, "[Errno 98] Address already in use")
    with pytest.raises(lifecycle.PortInUse, match=f"port {busy_port} is in use"):
        lifecycle.up(EmulatorConfig(state_dir=tmp_path, port=busy_port))


def test_a_failure_with_its_log_is_not_followed_by_the_supervisors_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_like_the_gateway(monkeypatch, "[Errno 13] Permission denied")
    with pytest.raises(lifecycle.StartupFailed) as caught:
        lifecycle.up(EmulatorConfig(state_dir=tmp_path, port=0))
    message = str(caught.value)
    assert message.count("Traceback") == 1 and "Permission denied" in message
    assert "the same traceback again" not in message
    assert message.endswith(f"see {tmp_path / 'logs' / 'supervisor.log'}")
