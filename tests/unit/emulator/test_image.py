"""Assembling the enclave image: a deterministic copy of the enclave's code plus a manifest."""

from __future__ import annotations

import importlib.metadata as metadata
import json
from pathlib import Path

import pytest

from emulator.host.artifacts import dependency_set
from emulator.nitro.image import (
    IMAGE_SOURCES,
    MANIFEST_NAME,
    ImageError,
    assemble_image,
    container_build_context,
    load_image,
)
from emulator.nitro.measure import measure_image
from vault.infra.artifacts import CONTEXT_DEPS, ENCLAVE

REPO_ROOT = Path(__file__).resolve().parents[3]

#: A file for each entry the enclave tier lists: the file itself, or a package's ``__init__.py``.
TIER_FILES = sorted(entry if entry.endswith(".py") else f"{entry}/__init__.py" for entry in IMAGE_SOURCES)


def make_source(root: Path) -> Path:
    for entry in TIER_FILES:
        (root / entry).parent.mkdir(parents=True, exist_ok=True)
        (root / entry).write_text(f"# {entry}\n")
    (root / "vault" / "enclave" / "__pycache__").mkdir(parents=True)
    (root / "vault" / "api").mkdir(parents=True)
    (root / "vault" / "infra" / "key_policy.py").write_text("KEY = 'vault_id'\n")
    # Beside the enclave's files but not among them: the image must leave these out.
    (root / "vault" / "infra" / "table.py").write_text("TABLE = 'api only'\n")
    (root / "vault" / "enclave" / "unused.py").write_text("UNUSED = 1\n")
    (root / "vault" / "common" / "framing.py").write_text("FRAMING = 1\n")
    (root / "vault" / "enclave" / "__main__.py").write_text("print('enclave')\n")
    (root / "vault" / "enclave" / "Dockerfile").write_text("FROM scratch\n")
    (root / "vault" / "enclave" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "vault" / "api" / "handler.py").write_text("secret = 'api only'\n")
    return root


def test_the_image_holds_only_the_enclave_code(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    image = assemble_image(tmp_path / "image", root=source, version="1.0")
    files = sorted(
        p.relative_to(image.directory).as_posix() for p in image.directory.rglob("*") if p.is_file()
    )
    assert files == sorted([MANIFEST_NAME, "vault/common/framing.py", *TIER_FILES])
    assert "vault/enclave/__main__.py" in files and "vault/infra/key_policy.py" in files
    manifest = json.loads((image.directory / MANIFEST_NAME).read_text())
    assert manifest["name"] == "enclave-vault" and manifest["version"] == "1.0"
    assert manifest["entrypoint"] == ["python3", "-m", "vault.enclave"]
    assert set(manifest["files"]) == set(files) - {MANIFEST_NAME}
    assert manifest["overrides"] == []


def test_assembly_is_deterministic_and_sensitive_to_code(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    first = assemble_image(tmp_path / "a", root=source, version="1")
    second = assemble_image(tmp_path / "b", root=source, version="1")
    assert first.digest == second.digest
    assert (first.directory / MANIFEST_NAME).read_bytes() == (second.directory / MANIFEST_NAME).read_bytes()
    changed = assemble_image(
        tmp_path / "c", root=source, version="1", overrides={"vault/enclave/__main__.py": b"print('x')\n"}
    )
    assert changed.digest != first.digest
    assert (changed.directory / "vault/enclave/__main__.py").read_text() == "print('x')\n"
    assert changed.manifest["overrides"] == ["vault/enclave/__main__.py"]
    added = assemble_image(
        tmp_path / "d", root=source, version="1", overrides={"vault/enclave/new.py": b"X=1\n"}
    )
    assert "vault/enclave/new.py" in added.manifest["files"]  # type: ignore[operator]
    assert load_image(added.directory).digest == added.digest


def test_reassembly_replaces_stale_files(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src")
    target = tmp_path / "image"
    assemble_image(target, root=source, overrides={"vault/enclave/extra.py": b""})
    assemble_image(target, root=source)
    assert not (target / "vault/enclave/extra.py").exists()


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.py", "vault/../../x"])
def test_overrides_stay_inside_the_image(tmp_path: Path, path: str) -> None:
    with pytest.raises(ImageError):
        assemble_image(tmp_path / "image", root=make_source(tmp_path / "src"), overrides={path: b""})


def test_the_real_enclave_image_is_assembled_from_this_tree(tmp_path: Path) -> None:
    image = assemble_image(tmp_path / "image")
    assert (image.directory / "vault" / "enclave" / "__init__.py").is_file()
    assert (image.directory / "vault" / "common" / "transport.py").is_file()
    assert not (image.directory / "vault" / "api").exists()
    assert not (image.directory / "vault" / "enclave" / "Dockerfile").exists()


def test_the_container_context_carries_code_and_libraries(tmp_path: Path) -> None:
    deps = dependency_set(ENCLAVE, cache_root=tmp_path / "deps")
    names = {d.metadata["Name"].lower().replace("_", "-") for d in metadata.distributions(path=[str(deps)])}
    assert {"cryptography", "pydantic", "cbor2", "boto3", "cel-python"} <= names
    assert "nitro-vault" not in names
    image = assemble_image(tmp_path / "image")
    context = container_build_context(image, tmp_path / "context", tmp_path / "deps")
    assert (context / "Dockerfile").read_text().count("ARG BASE_IMAGE") == 1
    assert (context / "app" / MANIFEST_NAME).is_file()
    assert (context / "deps" / "cbor2").is_dir() and (context / "deps" / "cryptography").is_dir()
    # the context's libraries are the enclave tier's dependency set, copied once per cache
    assert dependency_set(ENCLAVE, cache_root=tmp_path / "deps") == deps
    assert [p.name for p in (tmp_path / "deps").iterdir()] == [deps.name]


def _context_files(context: Path) -> dict[str, bytes]:
    """Every file of a build context but its dependency tree, by relative path."""
    return {
        path.relative_to(context).as_posix(): path.read_bytes()
        for path in sorted(context.rglob("*"))
        if path.is_file() and path.relative_to(context).parts[0] != CONTEXT_DEPS
    }


def test_the_container_runtime_builds_the_context_the_cdk_build_produces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "cdk"))
    # The CDK app's package is not on the unit tests' path until the line above puts it there.
    from vault_cdk import build

    installed: list[Path] = []

    def install(deps: Path) -> None:
        # Production fills deps/ with pip for the base image's Python; here only where is checked.
        installed.append(deps)
        (deps / "marker").write_text("deps\n")

    production = build.enclave_context(tmp_path / "production", [], install=install)
    emulated = container_build_context(
        assemble_image(tmp_path / "image"), tmp_path / "emulated", tmp_path / "deps"
    )
    assert installed == [production / CONTEXT_DEPS]
    production_files = _context_files(production)
    emulated_files = _context_files(emulated)
    # Same Dockerfile, same app/ (the tier's file set and the manifest), byte for byte.
    assert sorted(production_files) == sorted(emulated_files)
    assert production_files == emulated_files
    assert production_files["Dockerfile"] == (REPO_ROOT / "vault" / "enclave" / "Dockerfile").read_bytes()
    assert {f"app/{relative}" for relative in json.loads(production_files["app/manifest.json"])["files"]} == {
        name for name in production_files if name.startswith("app/") and name != "app/manifest.json"
    }
    # So both measure the same: the PCR0 the key policy pins is the one the emulator attests.
    assert measure_image(production / "app") == measure_image(emulated / "app")
    # Only deps/ differs in origin: the emulator copies this interpreter's distributions.
    assert (emulated / CONTEXT_DEPS / "cbor2").is_dir()
