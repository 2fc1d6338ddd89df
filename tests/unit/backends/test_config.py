"""BackendConfig validation and the cache directory's location."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.aws.backends import BackendConfig, default_cache_dir


def test_rejects_an_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend kind"):
        BackendConfig(kind="dynalite", state_dir=tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("account_id", ["12345", "12345678901a", ""])
def test_rejects_a_malformed_account(tmp_path: Path, account_id: str) -> None:
    with pytest.raises(ValueError, match="account_id"):
        BackendConfig(state_dir=tmp_path, account_id=account_id)


def test_rejects_a_port_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        BackendConfig(state_dir=tmp_path, port=70000)


def test_makes_paths_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    config = BackendConfig(state_dir=Path("state"), cache_dir=Path("cache"))
    assert config.state_dir == tmp_path / "state"
    assert config.cache_dir == tmp_path / "cache"


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NITRO_VAULT_EMULATOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nitro-vault-emulator"
    monkeypatch.setenv("NITRO_VAULT_EMULATOR_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
