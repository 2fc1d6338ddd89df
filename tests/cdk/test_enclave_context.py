"""``python -m vault_cdk.build enclave-context``: the enclave image's build context.

The emulator's container runtime builds its image from a context assembled by the same
function (:func:`vault.infra.artifacts.enclave_build_context`); tests/unit/emulator/test_image.py
compares the two contexts byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from pathlib import Path

import pytest
from vault_cdk import build
from vault_cdk.config import REPO_ROOT

from emulator.nitro.measure import measure_image
from vault.infra.artifacts import CONTEXT_DEPS, ENCLAVE, MANIFEST_NAME, source_files, write_app

VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def _files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_the_context_is_the_dockerfile_the_tier_file_set_and_the_dependencies(tmp_path: Path) -> None:
    installed: list[Path] = []

    def install(deps: Path) -> None:
        # Stands in for pip install --target (no package index here); records where it installs.
        installed.append(deps)
        (deps / "library.py").write_text("LIBRARY = 1\n")

    context = build.enclave_context(tmp_path / "context", [], install=install)
    assert ENCLAVE.image is not None
    assert installed == [context / CONTEXT_DEPS]
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "app", "deps"]
    assert (context / "Dockerfile").read_bytes() == (REPO_ROOT / ENCLAVE.image.dockerfile).read_bytes()
    tier_files = {relative: file.read_bytes() for relative, file in source_files(REPO_ROOT, ENCLAVE.sources)}
    app = _files(context / "app")
    # app/ is exactly the enclave tier's file set plus its manifest, nothing else of the tree.
    assert set(app) == set(tier_files) | {MANIFEST_NAME}
    assert {k: v for k, v in app.items() if k != MANIFEST_NAME} == tier_files
    manifest = json.loads(app[MANIFEST_NAME])
    assert manifest["version"] == VERSION
    assert manifest["entrypoint"] == list(ENCLAVE.image.command)
    assert manifest["overrides"] == []
    assert manifest["files"] == {k: hashlib.sha256(v).hexdigest() for k, v in sorted(tier_files.items())}
    assert _files(context / "deps") == {"library.py": b"LIBRARY = 1\n"}


def test_the_measurement_depends_on_app_alone(tmp_path: Path) -> None:
    def install(deps: Path) -> None:
        # Different libraries: deps/ is not part of the measured application.
        (deps / f"{deps.parent.name}.py").write_text("")

    first = build.enclave_context(tmp_path / "first", [], install=install)
    second = build.enclave_context(tmp_path / "second", [], install=install)
    assert measure_image(first / "app") == measure_image(second / "app")
    # The same files written by the shared writer elsewhere measure the same.
    elsewhere = tmp_path / "elsewhere"
    write_app(elsewhere, source_files(REPO_ROOT, ENCLAVE.sources), version=VERSION)
    assert measure_image(elsewhere) == measure_image(first / "app")
    changed = tmp_path / "changed"
    write_app(
        changed,
        source_files(REPO_ROOT, ENCLAVE.sources),
        version=VERSION,
        overrides={"vault/enclave/server.py": b"# changed\n"},
    )
    assert measure_image(changed).pcr0 != measure_image(first / "app").pcr0


def test_a_missing_source_fails_the_build_naming_the_tier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = dataclasses.replace(ENCLAVE, sources=(*ENCLAVE.sources, "vault/enclave/absent.py"))
    monkeypatch.setattr(build, "ENCLAVE", broken)
    with pytest.raises(SystemExit, match=r"enclave tier: vault/enclave/absent\.py is missing"):
        build.enclave_context(tmp_path / "context", [], install=lambda deps: None)
