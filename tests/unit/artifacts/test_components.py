"""The parent component starts the parent from its artifact, and `up` names what an artifact lacks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

import emulator.daemon.components.parent as parent_module
from emulator.aws.backends.config import CACHE_DIR_ENV
from emulator.daemon.components.base import Context
from emulator.daemon.components.credentials import AwsKey
from emulator.daemon.components.imds import ImdsComponent
from emulator.daemon.components.parent import ParentComponent
from emulator.daemon.config import EmulatorConfig
from emulator.host.process import StartupError
from vault.infra.artifacts import PARENT

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def parent(tmp_path: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ParentComponent]:
    monkeypatch.setenv(CACHE_DIR_ENV, str(cache_root))
    config = EmulatorConfig(state_dir=tmp_path / "state")
    config.layout.ensure()
    context = Context(config, config.layout)
    imds = ImdsComponent(context, instance=AwsKey("ASIAX", "secret", "token"))
    imds.start()
    component = ParentComponent(context, imds)
    try:
        yield component
    finally:
        component.stop()
        imds.stop()


def test_the_parent_runs_from_its_artifact(parent: ParentComponent) -> None:
    parent.start()
    assert parent.health().ok
    command = parent.command()
    assert command[1:4] == ["-I", "-S", "-u"]
    artifact = parent.artifact
    assert artifact is not None
    assert artifact.directory.is_relative_to(parent.layout.root)
    assert not any(
        Path(part).resolve().is_relative_to(REPO_ROOT) for part in command[4:] if part.startswith("/")
    )


def test_up_fails_naming_the_tier_and_the_module_an_artifact_lacks(
    parent: ParentComponent, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = dataclasses.replace(PARENT, sources=tuple(s for s in PARENT.sources if s != "vault/common"))
    monkeypatch.setattr(parent_module, "PARENT", broken)
    with pytest.raises(
        StartupError, match=r"parent: the parent tier's artifact lacks module 'vault\.common'"
    ):
        parent.start()
