"""What each tier ships, defined once for the CDK build and for the emulator.

A tier's artifact is its file set (paths relative to the directory that holds the ``vault``
package), its dependency set (an optional-dependency group of ``pyproject.toml``, on top of
the project's base dependencies), its entry point and the Python it runs on; the enclave's
also names the Dockerfile its image is built from and that image's base. The CDK app
bundles and builds from these definitions and the emulator assembles its images from them,
so the two cannot run different code. No other module lists tier sources.

A source is a file or a package directory (every file below it, bytecode caches aside).
The enclave's set lists files one by one: its image is measured, and it must hold exactly
the modules its entry point imports, nothing the enclave never runs (test doubles, demo).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TierName = Literal["enclave", "api", "parent"]
#: Interpreter caches: never part of an artifact (the interpreter would prefer them to the source).
_CACHE_PARTS = frozenset({"__pycache__"})
_CACHE_SUFFIXES = (".pyc", ".pyo")
#: The enclave image's manifest, written next to its code (``app/manifest.json``): every file
#: with its SHA-256, the image's name, version and command. It is part of what is measured.
MANIFEST_NAME = "manifest.json"
ENCLAVE_IMAGE_NAME = "enclave-vault"
#: The layout of the enclave image's Docker build context (what ``vault/enclave/Dockerfile`` copies).
CONTEXT_APP = "app"
CONTEXT_DEPS = "deps"
CONTEXT_DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class EntryPoint:
    """The callable a tier starts with: ``module`` and the name of a function in it."""

    module: str
    function: str

    @property
    def file(self) -> str:
        """The entry module's source file, relative to the directory holding ``vault``."""
        return self.module.replace(".", "/") + ".py"

    @property
    def reference(self) -> str:
        """``module.function``: Lambda's handler setting."""
        return f"{self.module}.{self.function}"

    @property
    def console_script(self) -> str:
        """``module:function``: a console script's target."""
        return f"{self.module}:{self.function}"


@dataclass(frozen=True)
class ContainerImage:
    """How the enclave image is built: the Dockerfile and the base its ``BASE_IMAGE`` defaults to."""

    dockerfile: str
    base_image: str
    command: tuple[str, ...]
    base_image_arg: str = "BASE_IMAGE"


@dataclass(frozen=True)
class Tier:
    name: TierName
    sources: tuple[str, ...]
    #: The ``pyproject.toml`` optional-dependency group this tier installs with the base dependencies.
    extra: str
    entry_point: EntryPoint
    #: The interpreter version of the tier's runtime (its wheels are built for it).
    python_version: str
    image: ContainerImage | None = None


ENCLAVE = Tier(
    name="enclave",
    sources=(
        "vault/__init__.py",
        "vault/common",
        "vault/enclave/__init__.py",
        "vault/enclave/__main__.py",
        "vault/enclave/batch.py",
        "vault/enclave/ber.py",
        "vault/enclave/blind_index.py",
        "vault/enclave/cel",
        "vault/enclave/cms.py",
        "vault/enclave/config.py",
        "vault/enclave/encoding.py",
        "vault/enclave/handler.py",
        "vault/enclave/key_decryptor.py",
        "vault/enclave/keys.py",
        "vault/enclave/kms_bridge.py",
        "vault/enclave/kms_decryptor.py",
        "vault/enclave/nsm.py",
        "vault/enclave/operations",
        "vault/enclave/recipient_keys.py",
        "vault/enclave/relay.py",
        "vault/enclave/server.py",
        # The key policy's constants (the recipient key spec, the encryption context key).
        "vault/infra/__init__.py",
        "vault/infra/key_policy.py",
    ),
    extra="enclave",
    entry_point=EntryPoint("vault.enclave.__main__", "main"),
    # The Dockerfile's base: Debian bookworm's Python 3.11.
    python_version="3.11",
    image=ContainerImage(
        dockerfile="vault/enclave/Dockerfile",
        base_image="python:3.11-slim-bookworm",
        command=("python3", "-m", "vault.enclave"),
    ),
)

API = Tier(
    name="api",
    sources=("vault/__init__.py", "vault/common", "vault/infra", "vault/api"),
    extra="api",
    entry_point=EntryPoint("vault.api.handler", "lambda_handler"),
    # Lambda's python3.13 runtime.
    python_version="3.13",
)

PARENT = Tier(
    name="parent",
    sources=("vault/__init__.py", "vault/common", "vault/parent"),
    extra="parent",
    entry_point=EntryPoint("vault.parent.cli", "main"),
    # Amazon Linux 2023's python3.11 on the parent instances.
    python_version="3.11",
)

TIERS: tuple[Tier, ...] = (ENCLAVE, API, PARENT)


def tier(name: str) -> Tier:
    """The tier called ``name``; a ``KeyError`` naming the known tiers otherwise."""
    for candidate in TIERS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no tier {name!r}; tiers are {[t.name for t in TIERS]}")


class MissingSource(FileNotFoundError):
    """A tier lists a source that is not under the source root."""


def source_files(root: Path, sources: tuple[str, ...]) -> list[tuple[str, Path]]:
    """Every file ``sources`` stands for under ``root``: (path relative to ``root``, file), in order.

    The CDK bundling, the CDK build commands and the emulator's tier artifacts all copy
    exactly these files.
    """
    found: list[tuple[str, Path]] = []
    for entry in sources:
        path = root / entry
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            raise MissingSource(f"{entry} is missing under {root}")
        for file in files:
            relative = file.relative_to(root)
            if _is_cache(relative):
                continue
            found.append((relative.as_posix(), file))
    return found


def _is_cache(relative: Path) -> bool:
    return bool(_CACHE_PARTS.intersection(relative.parts)) or relative.suffix in _CACHE_SUFFIXES


def write_app(
    destination: Path,
    files: Iterable[tuple[str, Path]],
    *,
    version: str,
    overrides: Mapping[str, bytes] | None = None,
    name: str = ENCLAVE_IMAGE_NAME,
    entrypoint: Iterable[str] | None = None,
) -> dict[str, object]:
    """(Re)create ``destination`` as an enclave image's code: ``files`` and its manifest; return the manifest.

    ``files`` are (path inside the image, source file); ``overrides`` replace or add contents
    by path. The production build context's ``app/`` and the emulator's image are both
    written by this function, so the two hold the same bytes and measure the same.
    """
    overrides = dict(overrides or {})
    command = list(entrypoint) if entrypoint is not None else list(_enclave_command())
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    digests: dict[str, str] = {}
    for relative, source in files:
        content = overrides.get(relative)
        data = source.read_bytes() if content is None else content
        _write(destination / relative, data)
        digests[relative] = hashlib.sha256(data).hexdigest()
    for relative, content in overrides.items():
        if relative not in digests:
            _write(destination / relative, content)
            digests[relative] = hashlib.sha256(content).hexdigest()
    manifest: dict[str, object] = {
        "name": name,
        "version": version,
        "entrypoint": command,
        "files": dict(sorted(digests.items())),
        "overrides": sorted(overrides),
    }
    (destination / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _enclave_command() -> tuple[str, ...]:
    if ENCLAVE.image is None:
        raise ValueError("the enclave tier defines no image")
    return ENCLAVE.image.command


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _skip_caches(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if _is_cache(Path(name))}


def enclave_build_context(
    destination: Path, *, app: Path, dockerfile: Path, install_deps: Callable[[Path], None]
) -> Path:
    """(Re)create ``destination`` as the enclave image's Docker build context; return it.

    ``app/`` is a copy of the image code in ``app`` (written by :func:`write_app`; bytecode
    caches left out), ``Dockerfile`` the enclave's, and ``deps/`` what ``install_deps`` puts
    into the directory it is given: the enclave tier's dependency set, for the image's Python.
    ``python -m vault_cdk.build enclave-context`` and the emulator's container runtime both
    build their context here; only how ``deps/`` is filled differs.
    """
    if not dockerfile.is_file():
        raise MissingSource(f"the enclave Dockerfile {dockerfile} is missing")
    if not (app / MANIFEST_NAME).is_file():
        raise MissingSource(f"{app} is not an enclave image: it has no {MANIFEST_NAME}")
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    shutil.copyfile(dockerfile, destination / CONTEXT_DOCKERFILE)
    shutil.copytree(app, destination / CONTEXT_APP, symlinks=True, ignore=_skip_caches)
    deps = destination / CONTEXT_DEPS
    deps.mkdir()
    install_deps(deps)
    return destination
