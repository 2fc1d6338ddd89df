"""A Docker engine for the emulator: an existing one if it answers, else a dockerd of our own.

Ours runs as root with everything under ``<dir>/docker`` (data root, log, pid file;
the socket and exec root too unless that path is too long for a Unix socket, in which
case they go to a short directory under the system temporary directory). The emulator
and ``python -m emulator.host.system`` give it the shared cache as ``<dir>``, so its
images (the debootstrapped base above all) are built once per machine. Clients reach
it through the environment :func:`engine_environment` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import docker
from docker.errors import DockerException

from emulator.host.process import tail_file
from emulator.host.procfs import alive
from emulator.host.progress import step
from emulator.host.system.errors import SystemSetupError
from emulator.host.system.tools import ensure_tool, find_command

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# sun_path holds 107 bytes plus NUL; containerd's longest socket below the exec root.
_SUN_PATH_MAX = 107
_LONGEST_SOCKET_SUFFIX = len("/exec/containerd/containerd.sock.ttrpc")


def engine_environment(docker_host: str) -> dict[str, str]:
    """What clients (docker CLI, docker-py, testcontainers) need to use the engine here.

    testcontainers' Ryuk reaper image cannot be pulled without a registry, and a
    ``/.dockerenv`` file makes it pick the wrong way to reach published ports.
    """
    return {
        "DOCKER_HOST": docker_host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
    }


def engine_answers(docker_host: str, timeout: float = 3.0) -> bool:
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=timeout)
    except DockerException:
        return False
    try:
        return bool(client.ping())
    except DockerException:
        return False
    finally:
        client.close()


@dataclass(frozen=True)
class DockerEngineConfig:
    state_dir: Path
    start_timeout: float = 60.0
    stop_timeout: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())

    @property
    def root(self) -> Path:
        return self.state_dir / "docker"

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def runtime_dir(self) -> Path:
        preferred = self.root / "run"
        if len(os.fsencode(preferred)) + _LONGEST_SOCKET_SUFFIX <= _SUN_PATH_MAX:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"nitro-vault-docker-{digest}"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.runtime_dir / "exec"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


def running_engine(config: DockerEngineConfig) -> str | None:
    """``DOCKER_HOST`` of an engine that answers: the caller's, ours, or the system's."""
    candidates = [os.environ.get("DOCKER_HOST", ""), config.docker_host, DEFAULT_DOCKER_HOST]
    for host in dict.fromkeys(candidate for candidate in candidates if candidate):
        if engine_answers(host):
            return host
    return None


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


class DockerEngine:
    """A dockerd of our own. As a context manager it is stopped on exit; ``detach`` keeps it running."""

    def __init__(self, config: DockerEngineConfig) -> None:
        self.config = config
        self._popen: subprocess.Popen[bytes] | None = None
        self.started_seconds: float | None = None

    @property
    def pid(self) -> int | None:
        if self._popen is not None:
            return self._popen.pid
        return _read_pid(self.config.pidfile)

    def start(self) -> None:
        with step(f"starting dockerd (data in {self.config.data_root})"):
            self._start()

    def _start(self) -> None:
        if os.geteuid() != 0:
            raise SystemSetupError(
                "starting dockerd needs root; or start a Docker engine and set DOCKER_HOST"
            )
        ensure_tool("docker")
        dockerd = find_command("dockerd")
        if dockerd is None:
            raise SystemSetupError("dockerd not found after installing docker.io")
        config = self.config
        for directory in (config.root, config.data_root, config.runtime_dir, config.exec_root):
            directory.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with open(config.log_file, "ab") as log:
            self._popen = subprocess.Popen(
                [
                    dockerd,
                    "--host",
                    config.docker_host,
                    "--data-root",
                    str(config.data_root),
                    "--exec-root",
                    str(config.exec_root),
                    "--pidfile",
                    str(config.pidfile),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a terminal's Ctrl-C must not reach a daemon meant to outlive the CLI.
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + config.start_timeout
        while not engine_answers(config.docker_host, timeout=1.0):
            if self._popen.poll() is not None:
                self._popen = None
                raise SystemSetupError(f"dockerd exited during startup:\n{tail_file(config.log_file, 20)}")
            if time.monotonic() >= deadline:
                self.stop()
                raise SystemSetupError(f"dockerd did not answer within {config.start_timeout:.0f} s")
            time.sleep(0.1)
        self.started_seconds = time.monotonic() - began

    def stop(self) -> bool:
        """Stop our dockerd (started by this object or, through its pid file, by an earlier run)."""
        pid = self.pid
        popen, self._popen = self._popen, None
        if pid is None or not alive(pid):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout
        while alive(pid) and time.monotonic() < deadline:
            if popen is not None and popen.poll() is not None:
                break
            time.sleep(0.1)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if popen is not None:
            popen.wait(timeout=self.config.stop_timeout)
        else:
            # Started by another DockerEngine object of this process (ensure_engine's): reap
            # it here, or it stays a zombie. Not our child (started by an earlier CLI run):
            # its parent, or init, reaps it.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        return True

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class EngineStatus:
    docker_host: str
    #: True when this call started dockerd (``stop dockerd`` stops it again).
    started: bool
    seconds: float
    #: The dockerd this call started, for its caller to stop; ``None`` when one was running.
    engine: DockerEngine | None = None

    @property
    def environment(self) -> dict[str, str]:
        return engine_environment(self.docker_host)


def ensure_engine(config: DockerEngineConfig) -> EngineStatus:
    """An answering engine: a running one if found, else our dockerd, left running."""
    began = time.monotonic()
    existing = running_engine(config)
    if existing is not None:
        return EngineStatus(existing, False, time.monotonic() - began)
    engine = DockerEngine(config)
    engine.start()
    return EngineStatus(config.docker_host, True, time.monotonic() - began, engine)
