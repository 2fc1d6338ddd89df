"""Build the deployment's inputs that need a package index: ``python -m vault_cdk.build ...``.

Run these once per release on any machine with pip (they download arm64 wheels, so the
build host's own architecture does not matter); ``cdk synth`` afterwards is offline.

* ``lambda-deps``: the API function's libraries for arm64 / Python 3.13, as a layer tree.
* ``parent-wheels``: the nitro-vault wheel plus the parent's libraries for arm64 /
  Python 3.11 (Amazon Linux 2023's ``python3.11``), for the instances' artifacts.
* ``enclave-context``: the Docker build context of the enclave image (``app/``, ``deps/``
  and the Dockerfile), for ``docker build`` then ``nitro-cli build-enclave``.

The requirement lists are read from ``pyproject.toml`` so they never diverge from it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from .config import CDK_DIR, REPO_ROOT
from .packaging import copy_sources

#: Amazon Linux 2023 (Lambda's python3.13 and the instances) has glibc 2.34 and the enclave's
#: Debian bookworm base 2.36, so every manylinux tag up to 2.34 fits. pip takes the tags
#: literally (no "or older"), hence the list.
PLATFORMS = (
    *(f"manylinux_2_{minor}_aarch64" for minor in (34, 31, 28, 27, 26, 24, 17)),
    "manylinux2014_aarch64",
)
ENCLAVE_SOURCES = ("vault/__init__.py", "vault/common", "vault/enclave")
_SELF = re.compile(r"^nitro-vault\b", re.IGNORECASE)


def requirements(extra: str, pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies plus one optional extra, without references to the project itself."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    if extra not in extras:
        raise SystemExit(f"pyproject.toml has no optional dependency group {extra!r}")
    found.extend(extras[extra])
    return [req for req in found if not _SELF.match(req)]


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


def lambda_deps(out: Path, find_links: Sequence[str]) -> None:
    target = _fresh(out) / "python"
    links = [arg for link in find_links for arg in ("--find-links", link)]
    _pip("install", "--target", str(target), *_platform_args("3.13"), *links, *requirements("api"))


def parent_wheels(out: Path, find_links: Sequence[str]) -> None:
    wheels = _fresh(out)
    links = [arg for link in find_links for arg in ("--find-links", link)]
    _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(REPO_ROOT))
    _pip("download", "--dest", str(wheels), *_platform_args("3.11"), *links, *requirements("parent"))


def enclave_context(out: Path, find_links: Sequence[str]) -> None:
    context = _fresh(out)
    copy_sources(REPO_ROOT, ENCLAVE_SOURCES, context / "app")
    shutil.copy2(REPO_ROOT / "vault" / "enclave" / "Dockerfile", context / "Dockerfile")
    links = [arg for link in find_links for arg in ("--find-links", link)]
    _pip(
        "install",
        "--target",
        str(context / "deps"),
        *_platform_args("3.11"),
        *links,
        *requirements("enclave"),
    )


COMMANDS = {
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
