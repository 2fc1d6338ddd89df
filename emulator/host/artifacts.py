"""A tier's artifact, assembled for the emulator from what the deployment ships.

An artifact is a directory holding the tier's file set (:mod:`vault.infra.artifacts`,
the same files the CDK app bundles) as ``task/``, a copy of :mod:`emulator.host.bootstrap`
that starts its entry point, and the tier's dependency set: the installed distributions
its requirements (the base dependencies plus the tier's extra, read from
``pyproject.toml`` as ``python -m vault_cdk.build`` reads them) resolve to, with
everything those require in turn. The emulator runs without a package index, so the
dependency set is copied from this environment's installed distributions, once per
machine: its directory is named by a hash of the interpreter and of each distribution's
name, version and ``RECORD`` (the hashes of its files), so a changed environment gets a
new copy and an unchanged one costs nothing at ``up``.

The process starts with an isolated interpreter whose ``sys.path`` is ``task/``, the
dependency set and the standard library: nothing of the repository or of this
environment's site-packages. A module the artifact lacks fails at start, naming the tier
and the module.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import platform
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

import vault
from emulator.aws.backends.config import default_cache_dir
from emulator.host import bootstrap
from vault.infra.artifacts import MissingSource, Tier, source_files

#: The project's distribution; requirements naming it are the project's own extras, not dependencies.
PROJECT_DISTRIBUTION = "nitro-vault"
TASK_DIR = "task"
BOOTSTRAP_NAME = "bootstrap.py"
#: Under the emulator's per-machine cache (``$NITRO_VAULT_EMULATOR_CACHE_DIR``, else ``~/.cache/...``).
CACHE_SUBDIR = "tier-deps"
_COMPLETE = ".complete"
_CACHE_PARTS = frozenset({"__pycache__"})


class ArtifactError(RuntimeError):
    """A tier's artifact cannot be assembled (a missing source, an uninstalled dependency)."""


@dataclass(frozen=True)
class TierArtifact:
    tier: Tier
    directory: Path
    dependencies: Path

    @property
    def task(self) -> Path:
        """The tier's file set: the directory holding its ``vault`` package."""
        return self.directory / TASK_DIR

    @property
    def bootstrap(self) -> Path:
        return self.directory / BOOTSTRAP_NAME

    @property
    def sys_path(self) -> tuple[Path, ...]:
        """What the tier's process imports from, ahead of the standard library."""
        return (self.task, self.dependencies)

    def command(
        self, *arguments: str, channel: int | None = None, interpreter: str = sys.executable
    ) -> list[str]:
        """The isolated interpreter's command line that starts the tier's entry point."""
        argv = [interpreter, "-I", "-S", "-u", str(self.bootstrap), "--tier", self.tier.name]
        for path in self.sys_path:
            argv += ["--path", str(path)]
        argv += ["--entry", self.tier.entry_point.console_script]
        if channel is not None:
            argv += ["--channel", str(channel)]
        return [*argv, "--", *arguments]


def source_root() -> Path:
    """The directory holding the ``vault`` package being run."""
    return Path(vault.__file__).resolve().parent.parent


def default_cache_root() -> Path:
    return default_cache_dir() / CACHE_SUBDIR


# -- requirements -------------------------------------------------------------------


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(texts: Iterable[str], origin: str) -> list[Requirement]:
    try:
        return [Requirement(text) for text in texts]
    except InvalidRequirement as exc:
        raise ArtifactError(f"{origin}: {exc}") from exc


def tier_requirements(tier: Tier, root: Path | None = None) -> list[Requirement]:
    """The base dependencies plus ``tier``'s extra, without references to the project itself.

    From ``pyproject.toml`` when the project runs from its checkout (what the CDK build
    installs), else from the installed project's metadata.
    """
    root = source_root() if root is None else root
    pyproject = root / "pyproject.toml"
    project: dict[str, Any] = (
        tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {}) if pyproject.is_file() else {}
    )
    if project.get("name") == PROJECT_DISTRIBUTION:
        extras = project.get("optional-dependencies", {})
        if tier.extra not in extras:
            raise ArtifactError(f"pyproject.toml has no optional dependency group {tier.extra!r}")
        found = _parse([*project.get("dependencies", []), *extras[tier.extra]], str(pyproject))
    else:
        try:
            dist = metadata.distribution(PROJECT_DISTRIBUTION)
        except metadata.PackageNotFoundError as exc:
            raise ArtifactError(f"{PROJECT_DISTRIBUTION} is not installed") from exc
        found = [
            requirement
            for requirement in _parse(dist.requires or [], PROJECT_DISTRIBUTION)
            if requirement.marker is None or requirement.marker.evaluate({"extra": tier.extra})
        ]
    return [r for r in found if _normalise(r.name) != _normalise(PROJECT_DISTRIBUTION)]


def resolve(tier: Tier, requirements: Sequence[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need, with everything they require in turn."""
    found: dict[str, metadata.Distribution] = {}
    extras_done: dict[str, set[str]] = {}
    pending: list[tuple[str, set[str]]] = [
        (r.name, set(r.extras)) for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})
    ]
    while pending:
        name, extras = pending.pop()
        key = _normalise(name)
        if key == _normalise(PROJECT_DISTRIBUTION):
            continue
        # "" stands for the requirements that come without an extra.
        new = ({"", *extras}) - extras_done.get(key, set())
        if not new:
            continue
        dist = found.get(key)
        if dist is None:
            try:
                dist = metadata.distribution(name)
            except metadata.PackageNotFoundError as exc:
                raise ArtifactError(f"the {tier.name} tier needs {name}, which is not installed") from exc
            found[key] = dist
        extras_done[key] = extras_done.get(key, set()) | new
        for requirement in _parse(dist.requires or [], name):
            marker = requirement.marker
            wanted = "" in new if marker is None else any(marker.evaluate({"extra": e}) for e in new)
            if wanted:
                pending.append((requirement.name, set(requirement.extras)))
    return [found[key] for key in sorted(found)]


# -- the dependency set ---------------------------------------------------------------


def dependency_fingerprint(distributions: Iterable[metadata.Distribution]) -> str:
    """A hash of the interpreter and of each distribution's name, version and file hashes."""
    digest = hashlib.sha256()
    digest.update(f"{sys.implementation.cache_tag} {platform.machine()}\n".encode())
    for dist in distributions:
        record = dist.read_text("RECORD") or ""
        digest.update(f"{dist.metadata['Name']}=={dist.version}\n".encode())
        digest.update(hashlib.sha256(record.encode()).digest())
    return digest.hexdigest()


def dependency_set(tier: Tier, cache_root: Path | None = None, root: Path | None = None) -> Path:
    """The directory holding ``tier``'s dependency set (a site-packages layout), copied once per machine."""
    distributions = resolve(tier, tier_requirements(tier, root))
    cache_root = default_cache_root() if cache_root is None else cache_root
    directory = cache_root / f"{tier.name}-{dependency_fingerprint(distributions)[:20]}"
    if (directory / _COMPLETE).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    # Copied beside its final place, then renamed: a concurrent `up` sees a whole set or none.
    staging = Path(tempfile.mkdtemp(prefix=f".{tier.name}-", dir=directory.parent))
    try:
        for dist in distributions:
            _copy_distribution(dist, staging)
        (staging / _COMPLETE).write_text(
            "\n".join(f"{d.metadata['Name']}=={d.version}" for d in distributions)
        )
        try:
            staging.rename(directory)
        except OSError:
            if not (directory / _COMPLETE).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory


def _copy_distribution(dist: metadata.Distribution, destination: Path) -> None:
    base = Path(str(dist.locate_file("")))
    for entry in dist.files or []:
        relative = Path(str(entry))
        # Scripts and data outside site-packages are not imported; bytecode is recompiled.
        if ".." in relative.parts or relative.is_absolute() or _CACHE_PARTS.intersection(relative.parts):
            continue
        source = base / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


# -- the artifact ---------------------------------------------------------------------


def assemble(
    tier: Tier, destination: Path, *, cache_root: Path | None = None, root: Path | None = None
) -> TierArtifact:
    """(Re)create ``destination`` as ``tier``'s artifact: its file set and the bootstrap."""
    root = source_root() if root is None else root
    try:
        files = source_files(root, tier.sources)
    except MissingSource as exc:
        raise ArtifactError(f"the {tier.name} tier: {exc}") from exc
    dependencies = dependency_set(tier, cache_root, root)
    if destination.exists():
        shutil.rmtree(destination)
    task = destination / TASK_DIR
    task.mkdir(parents=True)
    for relative, file in files:
        target = task / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    shutil.copy2(Path(bootstrap.__file__), destination / BOOTSTRAP_NAME)
    return TierArtifact(tier, destination, dependencies)


def missing_module(log_text: str) -> str | None:
    """The bootstrap's line naming a module an artifact lacks, if ``log_text`` holds one."""
    for line in reversed(log_text.splitlines()):
        if line.startswith(bootstrap.MISSING_MODULE_PREFIX):
            return line.removeprefix(bootstrap.MISSING_MODULE_PREFIX).strip()
    return None
