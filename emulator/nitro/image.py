"""The enclave "image": the exact code an emulated enclave runs, assembled in the state dir.

A Nitro Enclave runs an EIF whose measurements (PCR0/1/2) identify its contents. The
emulator's equivalent is a directory holding a copy of the enclave's code
(the enclave tier's file set, ``vault.infra.artifacts.ENCLAVE``) and a deterministic
``manifest.json`` listing every file with its SHA-256. The measurement is taken over
this directory and the sandbox runs the enclave from it (``PYTHONPATH`` = image
directory), so code changed after measuring is code KMS no longer trusts.

``overrides`` replace or add files in the copy: the demo uses them to launch an image
whose code differs from the one the key policy was written for.

Every launch runs a private copy, as ``nitro-cli run-enclave`` loads the EIF into the
enclave's memory: :func:`snapshot_image` copies the image directory as it is at that
moment (bytecode caches left out, since they are not measured and the interpreter would
prefer them to the source), the launch measures the copy and the sandbox runs the copy.
What runs is what was measured, whatever happens to the state directory afterwards; a
changed byte there shows in the PCRs of the next launch.

The image's code and manifest are written by :func:`vault.infra.artifacts.write_app`, the
function the production build context's ``app/`` comes from. For the container runtime,
:func:`container_build_context` lays out the Docker build context with
:func:`vault.infra.artifacts.enclave_build_context`, as ``python -m vault_cdk.build
enclave-context`` does: the same ``Dockerfile``, the image as ``app/``, and as ``deps/`` the
enclave's installed Python distributions (copied from this environment, because an image
build here cannot reach a package index).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import vault
from emulator.host.artifacts import ArtifactError, dependency_set
from emulator.nitro.measure import is_bytecode_cache
from vault.infra import artifacts
from vault.infra.artifacts import ENCLAVE, MissingSource, enclave_build_context, write_app

IMAGE_NAME = artifacts.ENCLAVE_IMAGE_NAME
MANIFEST_NAME = artifacts.MANIFEST_NAME
#: What an enclave image contains, relative to the directory holding the ``vault`` package:
#: the enclave tier's file set, the same the production EIF is built from.
IMAGE_SOURCES = ENCLAVE.sources
ENTRYPOINT = ENCLAVE.image.command if ENCLAVE.image is not None else ("python3", "-m", "vault.enclave")
#: The enclave tier's Dockerfile, the one the production image is built from.
DOCKERFILE = Path(vault.__file__).resolve().parent.parent / (
    ENCLAVE.image.dockerfile if ENCLAVE.image is not None else "vault/enclave/Dockerfile"
)
_SKIP_NAMES = frozenset({"Dockerfile"})
#: The project's distribution (its version goes into the manifest).
PROJECT_DISTRIBUTION = "nitro-vault"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class EnclaveImage:
    directory: Path
    manifest: dict[str, object]

    @property
    def digest(self) -> str:
        """SHA-256 over the manifest: a short, stable name for this exact content."""
        encoded = json.dumps(self.manifest, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(encoded).hexdigest()


def source_root() -> Path:
    """The directory that holds the ``vault`` package being run."""
    return Path(vault.__file__).resolve().parent.parent


def _image_files(root: Path, sources: Sequence[str]) -> Iterable[tuple[str, Path]]:
    for entry in sources:
        path = root / entry
        if path.is_file():
            yield entry, path
            continue
        if not path.is_dir():
            raise ImageError(f"the enclave image needs {entry}, which is missing under {root}")
        for file in sorted(path.rglob("*")):
            relative = file.relative_to(root)
            # The measurement skips bytecode caches too: the image holds what is measured.
            if not file.is_file() or is_bytecode_cache(relative) or file.name in _SKIP_NAMES:
                continue
            yield relative.as_posix(), file


def _check_relative(path: str) -> str:
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts or not parts:
        raise ImageError(f"override path {path!r} must be relative and inside the image")
    return Path(path).as_posix()


def assemble_image(
    destination: Path,
    *,
    overrides: Mapping[str, bytes] | None = None,
    root: Path | None = None,
    version: str | None = None,
    sources: Sequence[str] = IMAGE_SOURCES,
    name: str = IMAGE_NAME,
    entrypoint: Sequence[str] = ENTRYPOINT,
) -> EnclaveImage:
    """(Re)create ``destination`` as an enclave image and return it with its manifest.

    By default the image is the vault's (the enclave tier's file set under ``root``);
    ``sources`` ``("",)`` takes every file under ``root``, as an enclave spec's image directory.
    """
    root = source_root() if root is None else root
    overrides = {_check_relative(path): content for path, content in (overrides or {}).items()}
    manifest = write_app(
        destination,
        _image_files(root, sources),
        version=version or _project_version(),
        overrides=overrides,
        name=name,
        entrypoint=entrypoint,
    )
    return EnclaveImage(destination, manifest)


def _ignore_bytecode(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if is_bytecode_cache(Path(name))}


def snapshot_image(source: Path, destination: Path) -> EnclaveImage:
    """(Re)create ``destination`` as a copy of the image in ``source``, as it is now.

    Symbolic links stay links (the measurement records their targets); bytecode caches
    are not copied. The copy is what a launch measures and runs.
    """
    if not (source / MANIFEST_NAME).is_file():
        raise ImageError(f"{source} is not an enclave image: it has no {MANIFEST_NAME}")
    remove_snapshot(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, destination, symlinks=True, ignore=_ignore_bytecode)
    # Read-only, as a loaded EIF is: neither the enclave nor a careless tool edits what was measured.
    for current, _, files in os.walk(destination):
        for name in files:
            path = Path(current) / name
            if not path.is_symlink():
                path.chmod(0o444)
        Path(current).chmod(0o555)
    return load_image(destination)


def remove_snapshot(directory: Path) -> None:
    """Delete a copy made by :func:`snapshot_image` (its directories are read-only)."""
    if not directory.exists():
        return
    for current, _, _ in os.walk(directory):
        Path(current).chmod(0o755)
    shutil.rmtree(directory)


def _project_version() -> str:
    try:
        return metadata.version(PROJECT_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0"


def load_image(directory: Path) -> EnclaveImage:
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ImageError(f"{directory} is not an enclave image: {exc}") from exc
    return EnclaveImage(directory, manifest)


# -- container build context ------------------------------------------------------


def container_build_context(image: EnclaveImage, context_dir: Path, deps_cache: Path | None = None) -> Path:
    """Lay out ``context_dir`` for ``docker build`` from ``image``; return it.

    The context is assembled by :func:`vault.infra.artifacts.enclave_build_context`, as
    ``python -m vault_cdk.build enclave-context`` assembles production's: the same
    Dockerfile and the same ``app/`` bytes (the image as it is now, bytecode caches left out:
    what the launch measures). ``deps/`` differs in origin: here it is the enclave tier's
    dependency set copied from this interpreter's installed distributions
    (:func:`emulator.host.artifacts.dependency_set`, kept under ``deps_cache``, by default the
    machine's cache), because the emulator's image build is offline; production installs it
    with ``pip install --target`` for the base image's Python.
    """
    try:
        deps = dependency_set(ENCLAVE, cache_root=deps_cache)
    except ArtifactError as exc:
        raise ImageError(str(exc)) from exc

    def install_deps(target: Path) -> None:
        # Hard links keep a 100 MB dependency tree from being copied per build.
        shutil.copytree(deps, target, dirs_exist_ok=True, copy_function=_link_or_copy)

    try:
        return enclave_build_context(
            context_dir, app=image.directory, dockerfile=DOCKERFILE, install_deps=install_deps
        )
    except MissingSource as exc:
        raise ImageError(str(exc)) from exc


def _link_or_copy(source: str, target: str) -> None:
    try:
        Path(target).hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)
