"""Build the deployment's inputs that need a package index: ``python -m vault_cdk.build ...``.

Run these once per release on any machine with pip (they download arm64 wheels, so the
build host's own architecture does not matter); ``cdk synth`` afterwards is offline.

* ``lambda-deps``: the API function's libraries for arm64 / Python 3.13, as a layer tree.
* ``parent-wheels``: a nitro-vault wheel of the parent's file set alone plus the parent's
  libraries for arm64 / Python 3.11 (Amazon Linux 2023's ``python3.11``), for the
  instances' artifacts.
* ``enclave-context``: the Docker build context of the enclave image (``app/`` = the enclave
  tier's file set and its ``manifest.json``, ``deps/`` and the Dockerfile), for
  ``docker build`` then ``nitro-cli build-enclave``. It is assembled by
  :func:`vault.infra.artifacts.enclave_build_context`, which the emulator's container
  runtime uses too.

What each tier ships comes from :mod:`vault.infra.artifacts`; the requirement lists are read
from ``pyproject.toml`` so they never diverge from it. This module needs pip, not the CDK
libraries.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vault.infra.artifacts import (
    API,
    ENCLAVE,
    PARENT,
    MissingSource,
    Tier,
    enclave_build_context,
    source_files,
    write_app,
)

from .config import CDK_DIR, REPO_ROOT

#: Amazon Linux 2023 (Lambda's python3.13 and the instances) has glibc 2.34 and the enclave's
#: Debian bookworm base 2.36, so every manylinux tag up to 2.34 fits. pip takes the tags
#: literally (no "or older"), hence the list.
PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in (34, 31, 28, 27, 26, 24, 17)),
    "manylinux2014_aarch64",
)
_SELF = re.compile(r"^nitro-vault\b", re.IGNORECASE)


def _project(pyproject: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return project


def _without_self(requirements: Sequence[str]) -> list[str]:
    return [req for req in requirements if not _SELF.match(req)]


def requirements(extra: str, pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies plus one optional extra, without references to the project itself."""
    project = _project(pyproject)
    found = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"pyproject.toml has no optional dependency group {extra!r}")
    found.extend(extras[extra])
    return _without_self(found)


def _platform_args(python_version: str) -> list[str]:
    return [
        *(arg for platform in PLATFORMS for arg in ("--platform", platform)),
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
    ]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def _fresh(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def _find_links(find_links: Sequence[str]) -> list[str]:
    return [arg for link in find_links for arg in ("--find-links", link)]


def lambda_deps(out: Path, find_links: Sequence[str]) -> None:
    target = _fresh(out) / "python"
    _pip(
        "install",
        "--target",
        str(target),
        *_platform_args(API.python_version),
        *_find_links(find_links),
        *requirements(API.extra),
    )


def tier_project(tier: Tier, destination: Path, root: Path = REPO_ROOT) -> Path:
    """Stage a project holding only ``tier``'s file set, so its wheel ships nothing else.

    It keeps the project's name and version, the base dependencies and the tier's extra
    (so ``pip install "nitro-vault[<tier>]"`` works as for the full project), and the
    tier's console script.
    """
    project = _project(root / "pyproject.toml")
    staged = _fresh(destination)
    try:
        files = source_files(root, tier.sources)
    except MissingSource as exc:
        raise SystemExit(f"the {tier.name} tier: {exc}") from exc
    for relative, file in files:
        target = staged / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    extras = project.get("optional-dependencies", {})
    if tier.extra not in extras:
        raise SystemExit(f"pyproject.toml has no optional dependency group {tier.extra!r}")
    script = next(
        (
            name
            for name, target in project.get("scripts", {}).items()
            if target == tier.entry_point.console_script
        ),
        f"vault-{tier.name}",
    )
    # JSON strings are valid TOML basic strings, so json.dumps quotes every value safely.
    lines = [
        "[build-system]",
        'requires = ["setuptools>=69"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        f"name = {json.dumps(project['name'])}",
        f"version = {json.dumps(project['version'])}",
        f"requires-python = {json.dumps(project.get('requires-python', '>=3.11'))}",
        f"dependencies = {json.dumps(_without_self(project.get('dependencies', [])))}",
        "",
        "[project.optional-dependencies]",
        f"{tier.extra} = {json.dumps(_without_self(extras[tier.extra]))}",
        "",
        "[project.scripts]",
        f"{script} = {json.dumps(tier.entry_point.console_script)}",
        "",
        "[tool.setuptools.packages.find]",
        'include = ["vault*"]',
        "",
    ]
    (staged / "pyproject.toml").write_text("\n".join(lines), encoding="utf-8")
    return staged


def parent_wheels(out: Path, find_links: Sequence[str]) -> None:
    wheels = _fresh(out)
    # Staged outside the artifacts directory, which is uploaded as it is.
    with tempfile.TemporaryDirectory(prefix="parent-project-") as scratch:
        staged = tier_project(PARENT, Path(scratch) / "project")
        _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(staged))
    _pip(
        "download",
        "--dest",
        str(wheels),
        *_platform_args(PARENT.python_version),
        *_find_links(find_links),
        *requirements(PARENT.extra),
    )


def enclave_app(destination: Path, root: Path = REPO_ROOT) -> Path:
    """(Re)create ``destination`` as the enclave image's code: the tier's file set and its manifest.

    Written by :func:`vault.infra.artifacts.write_app` with the project's version, as the
    emulator writes its enclave image, so both measure the same.
    """
    try:
        files = source_files(root, ENCLAVE.sources)
    except MissingSource as exc:
        raise SystemExit(f"the enclave tier: {exc}") from exc
    write_app(destination, files, version=str(_project(root / "pyproject.toml")["version"]))
    return destination


def enclave_context(
    out: Path, find_links: Sequence[str], *, install: Callable[[Path], None] | None = None
) -> Path:
    """The enclave image's build context in ``out``; ``install`` fills ``deps/`` (default: pip)."""
    image = ENCLAVE.image
    if image is None:
        raise SystemExit("the enclave tier defines no image")

    def pip_target(deps: Path) -> None:
        _pip(
            "install",
            "--target",
            str(deps),
            *_platform_args(ENCLAVE.python_version),
            *_find_links(find_links),
            *requirements(ENCLAVE.extra),
        )

    # The code is staged outside the context, which enclave_build_context recreates.
    with tempfile.TemporaryDirectory(prefix="enclave-app-") as scratch:
        app = enclave_app(Path(scratch) / "app")
        try:
            return enclave_build_context(
                out, app=app, dockerfile=REPO_ROOT / image.dockerfile, install_deps=install or pip_target
            )
        except MissingSource as exc:
            raise SystemExit(str(exc)) from exc


COMMANDS: dict[str, tuple[Callable[[Path, Sequence[str]], object], Path]] = {
    "lambda-deps": (lambda_deps, CDK_DIR / "build" / "lambda-deps"),
    "parent-wheels": (parent_wheels, CDK_DIR / "build" / "artifacts" / "wheels"),
    "enclave-context": (enclave_context, CDK_DIR / "build" / "enclave-context"),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vault_cdk.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--out", type=Path, help="output directory (default: under cdk/build/)")
    parser.add_argument(
        "--find-links", action="append", default=[], help="extra wheel directory, e.g. a local mirror"
    )
    args = parser.parse_args(argv)
    build, default_out = COMMANDS[args.command]
    build(args.out or default_out, args.find_links)


if __name__ == "__main__":
    main()
