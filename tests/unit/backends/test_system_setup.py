"""Pure parts of the system setup: apt sources, Docker engine paths, tool table."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.aws.backends.config import CACHE_DIR_ENV
from emulator.host.progress import step
from emulator.host.system.base_image import BaseImageResult, BaseImageSpec
from emulator.host.system.dockerd import DockerEngineConfig, EngineStatus, engine_environment
from emulator.host.system.errors import SystemSetupError
from emulator.host.system.mirror import apt_sources, debian_codename, debian_mirror
from emulator.host.system.tools import TOOLS, ensure_tool

DEB822 = """\
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def _apt_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_reads_deb822_sources(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list.d/debian.sources": DEB822})
    assert debian_mirror("bookworm", apt_dir) == "http://mirror.example/debian"
    assert debian_mirror("bookworm-security", apt_dir) == "http://mirror.example/debian-security"


def test_reads_one_line_sources_with_options(tmp_path: Path) -> None:
    text = (
        "# deb http://old.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n"
    )
    apt_dir = _apt_dir(tmp_path, {"sources.list": text})
    assert debian_mirror("bookworm", apt_dir) == "http://one.example/debian"


def test_ignores_disabled_files_and_stanzas(tmp_path: Path) -> None:
    disabled = (
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
    )
    apt_dir = _apt_dir(
        tmp_path,
        {
            "sources.list.d/other.list.disabled-by-admin": "deb http://skip.example/debian bookworm main\n",
            "sources.list.d/a-off.sources": disabled,
            "sources.list.d/b.sources": DEB822,
        },
    )
    assert [source.uri for source in apt_sources(apt_dir)] == [
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    ]


def test_no_matching_source_is_an_error(tmp_path: Path) -> None:
    apt_dir = _apt_dir(tmp_path, {"sources.list.d/debian.sources": DEB822})
    with pytest.raises(SystemSetupError, match="--mirror"):
        debian_mirror("trixie", apt_dir)


def test_reads_the_codename(tmp_path: Path) -> None:
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert debian_codename(os_release) == "bookworm"


def test_engine_files_live_in_the_state_dir() -> None:
    state = Path("/srv/vault/.emulator")  # only paths are computed; nothing is created
    config = DockerEngineConfig(state)
    assert config.data_root == state / "docker" / "data"
    assert config.socket == state / "docker" / "run" / "docker.sock"
    assert config.docker_host == f"unix://{config.socket}"


def test_long_state_dirs_get_a_short_socket_dir(tmp_path: Path) -> None:
    config = DockerEngineConfig(tmp_path / ("x" * 90))
    assert len(str(config.exec_root / "containerd" / "containerd.sock.ttrpc")) <= 107
    assert config.data_root.is_relative_to(tmp_path)


def test_engine_environment_configures_testcontainers() -> None:
    env = engine_environment("unix:///run/x.sock")
    assert env == {
        "DOCKER_HOST": "unix:///run/x.sock",
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    }


def test_tool_table_and_unknown_tools() -> None:
    assert TOOLS["docker"].packages == ("docker.io",)
    assert set(TOOLS) >= {"docker", "java", "chromium", "node", "debootstrap"}
    with pytest.raises(SystemSetupError, match="unknown tool"):
        ensure_tool("emacs")


def test_cli_stop_without_an_engine_is_harmless(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.host.system.__main__ import main

    # The engine lives in the shared cache: point it here, away from this machine's.
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    assert main(["--state-dir", str(tmp_path), "stop", "dockerd"]) == 0
    assert "not running" in capsys.readouterr().err


def test_cli_keeps_the_engine_and_base_image_in_the_cache_and_progress_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.host.system import __main__ as cli

    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
    engines: list[DockerEngineConfig] = []
    work_dirs: list[Path] = []

    def fake_engine(config: DockerEngineConfig) -> EngineStatus:
        engines.append(config)
        with step("starting dockerd"):
            pass
        return EngineStatus(config.docker_host, True, 0.1)

    def fake_image(
        spec: BaseImageSpec, docker_host: str, work_dir: Path, *, rebuild: bool
    ) -> BaseImageResult:
        work_dirs.append(work_dir)
        with step("base image: debootstrap"):
            pass
        return BaseImageResult(spec.name, "sha256:0", True, 0.2, "http://mirror.example/debian")

    monkeypatch.setattr(cli, "ensure_tool", lambda name: None)
    monkeypatch.setattr(cli, "ensure_engine", fake_engine)
    monkeypatch.setattr(cli, "ensure_base_image", fake_image)
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["--state-dir", str(state_a), "ensure", "base-image"]) == 0
    assert cli.main(["--state-dir", str(state_b), "ensure", "base-image"]) == 0
    # One engine and one build directory for every state directory: the image is built once.
    assert [config.state_dir for config in engines] == [cache, cache]
    assert work_dirs == [cache / "base-image", cache / "base-image"]
    captured = capsys.readouterr()
    assert all(line.startswith("export ") for line in captured.out.splitlines())
    assert "export NITRO_VAULT_BASE_IMAGE=" in captured.out
    assert "  ✓ starting dockerd (" in captured.err
    assert "  ✓ base image: debootstrap (" in captured.err


def test_cli_env_without_an_engine_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.host.system import __main__ as cli
    from emulator.host.system import dockerd

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(dockerd, "DEFAULT_DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    # The engine this command starts lives in the shared cache: an empty one, so an engine
    # an earlier run left on this machine is not found.
    monkeypatch.setenv("NITRO_VAULT_EMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["--state-dir", str(tmp_path), "env"]) == 1
    assert "ensure docker" in capsys.readouterr().err


def test_cli_rejects_unknown_targets() -> None:
    from emulator.host.system.__main__ import main

    with pytest.raises(SystemExit):
        main(["ensure", "emacs"])
