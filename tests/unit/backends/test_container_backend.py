"""The localstack-container backend refuses to start, naming each missing prerequisite."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.aws.backends import BackendConfig, BackendUnavailable, ContainerSettings, start_backend


def _config(tmp_path: Path, token: str | None) -> BackendConfig:
    socket = tmp_path / "no-engine" / "docker.sock"
    settings = ContainerSettings(docker_host=f"unix://{socket}", auth_token=token)
    return BackendConfig(kind="localstack-container", state_dir=tmp_path, container=settings)


def test_names_both_missing_token_and_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALSTACK_AUTH_TOKEN", raising=False)
    with pytest.raises(BackendUnavailable) as refused:
        start_backend(_config(tmp_path, token=None))
    message = str(refused.value)
    assert "LOCALSTACK_AUTH_TOKEN" in message
    assert "Docker engine" in message
    assert "emulator.host.system ensure docker" in message


def test_names_only_the_engine_when_a_token_is_given(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable) as refused:
        start_backend(_config(tmp_path, token="ls-test-token"))
    message = str(refused.value)
    assert "Docker engine" in message
    assert "LOCALSTACK_AUTH_TOKEN" not in message


def test_reads_the_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALSTACK_AUTH_TOKEN", "ls-from-env")
    with pytest.raises(BackendUnavailable) as refused:
        start_backend(_config(tmp_path, token=None))
    assert "LOCALSTACK_AUTH_TOKEN" not in str(refused.value)
