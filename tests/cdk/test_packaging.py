"""Offline packaging: the API code bundler, the layer directory check, the build's requirement lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_cdk import build as artifacts
from vault_cdk.config import REPO_ROOT
from vault_cdk.packaging import (
    PackagingError,
    ProductCodeBundling,
    copy_sources,
    dependency_layer_code,
)

from vault.infra.artifacts import API

API_HANDLER_FILE = API.entry_point.file


def source_tree(root: Path, *, handler: bool = True) -> Path:
    for name in (
        "vault/__init__.py",
        "vault/common/__init__.py",
        "vault/infra/__init__.py",
        "vault/api/__init__.py",
        "vault/enclave/__init__.py",
        "vault/parent/__init__.py",
    ):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("", encoding="utf-8")
    (root / "vault/api/__pycache__").mkdir()
    (root / "vault/api/__pycache__/handler.cpython-313.pyc").write_bytes(b"")
    if handler:
        (root / API_HANDLER_FILE).write_text("def lambda_handler(event, context):\n    return {}\n")
    return root


def test_bundler_copies_only_the_api_packages(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src")
    out = tmp_path / "asset"
    out.mkdir()
    assert ProductCodeBundling(source, API).try_bundle(str(out)) is True
    copied = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert copied == [
        "vault/__init__.py",
        "vault/api/__init__.py",
        "vault/api/handler.py",
        "vault/common/__init__.py",
        "vault/infra/__init__.py",
    ]


def test_bundler_refuses_a_missing_handler(tmp_path: Path) -> None:
    source = source_tree(tmp_path / "src", handler=False)
    with pytest.raises(PackagingError, match="handler"):
        ProductCodeBundling(source, API).try_bundle(str(tmp_path))


def test_repository_holds_what_the_api_imports(tmp_path: Path) -> None:
    copied = copy_sources(REPO_ROOT, API.sources, tmp_path)
    assert "vault/infra/key_policy.py" in copied and "vault/infra/table.py" in copied
    assert not any(path.startswith(("vault/enclave/", "vault/parent/")) for path in copied)


def test_layer_directory_must_be_built(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="lambda-deps"):
        dependency_layer_code(tmp_path)


def test_requirements_come_from_pyproject() -> None:
    api = artifacts.requirements("api")
    assert any(r.startswith("aws-lambda-powertools") for r in api)
    assert any(r.startswith("cryptography") for r in api), "base dependencies are included"
    parent = artifacts.requirements("parent")
    assert any(r.startswith("starlette") for r in parent)
    assert not any(r.lower().startswith("nitro-vault") for r in artifacts.requirements("emulator"))
    with pytest.raises(SystemExit):
        artifacts.requirements("no-such-extra")


def test_function_sources_compile() -> None:
    functions = Path(artifacts.__file__).resolve().parent / "functions"
    for path in sorted(functions.glob("*/index.py")):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
