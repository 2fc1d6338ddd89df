"""Run the enclave with no network, as a Nitro Enclave runs: only vsock leads out.

Two runtimes share one :class:`SandboxSpec`:

* ``namespace`` — ``unshare`` puts the program in new network, PID, mount, IPC and
  UTS namespaces. The network namespace has only ``lo`` (brought up by
  :mod:`emulator.nitro.sandbox_init`, which is PID 1 there). The emulated vsock directory
  stays reachable because Unix sockets are filesystem objects, and the filesystem is
  shared; network namespaces only separate IP sockets.
* ``container`` — a Docker image built from ``vault/enclave/Dockerfile`` on a
  local base image, run with ``network_mode="none"`` and the vsock directory
  bind-mounted at the same path.

In both the environment is built from scratch (:func:`enclave_environment`): the
host's environment, and with it any AWS credentials, never reaches the enclave.

A spec with a :class:`~emulator.nitro.preload.Preload` runs the program with the
emulator's preload library (``LD_PRELOAD``, and its mapping's variables), so that it
reaches the NSM through ``/dev/nsm`` and the vsock through ``AF_VSOCK`` as in a real
enclave. The library stays where it was built (the namespace runtime shares the host's
file system; the container runtime mounts its directory read-only): it is never part
of the image.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import site
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emulator.host.process import ManagedProcess
from emulator.host.progress import step
from emulator.nitro.preload import Preload

#: Environment names that must never reach an enclave: it gets credentials per request over vsock.
_FORBIDDEN_PREFIXES = (
    "AWS_ACCESS_KEY",
    "AWS_SECRET",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
)
_FORBIDDEN_NAMES = frozenset(
    {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    }
)
SANDBOX_INIT = Path(__file__).with_name("sandbox_init.py")
ENCLAVE_MODULE = "vault.enclave"


class SandboxError(RuntimeError):
    """The sandbox could not be created or the program in it could not start."""


def interpreter_site_packages() -> list[str]:
    """This interpreter's site-packages directories (virtual environment first)."""
    return [path for path in site.getsitepackages() if Path(path).is_dir()]


def enclave_environment(
    *, image_dir: Path | str, extra: Mapping[str, str], python_path: Sequence[str] = ()
) -> dict[str, str]:
    """The complete environment of an enclave process.

    ``PYTHONPATH`` starts with the image directory, so the enclave runs the measured
    copy of its code and not the source tree.
    """
    for name in extra:
        if name in _FORBIDDEN_NAMES or name.startswith(_FORBIDDEN_PREFIXES):
            raise SandboxError(f"{name} must not be passed to an enclave")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/nonexistent",
        "PYTHONPATH": ":".join([str(image_dir), *python_path]),
        "PYTHONUNBUFFERED": "1",
        # The image is measured: the enclave must not write bytecode into it.
        "PYTHONDONTWRITEBYTECODE": "1",
        # botocore would otherwise probe IMDS for a region or credentials.
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class SandboxSpec:
    name: str
    image_dir: Path
    vsock_dir: Path
    env: Mapping[str, str]
    log_path: Path
    #: Program and arguments; by default the enclave service.
    command: Sequence[str] = field(default_factory=lambda: ["python3", "-m", ENCLAVE_MODULE])
    hostname: str = "enclave"
    #: Further host directories the program needs (e.g. its NSM socket's); the namespace
    #: runtime shares the host's file system, the container runtime bind-mounts them.
    shared_dirs: Sequence[Path] = ()
    #: Device mode: the preload library that maps /dev/nsm and AF_VSOCK onto the emulator.
    preload: Preload | None = None

    def process_env(self) -> dict[str, str]:
        """``env``, plus the preload library's variables in device mode."""
        env = dict(self.env)
        if self.preload is not None:
            env.update(self.preload.env(env))
        return env


class Sandbox(Protocol):
    spec: SandboxSpec

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def running(self) -> bool: ...
    def pids(self) -> list[int]: ...
    def describe(self) -> str: ...


class NamespaceSandbox:
    """The program under ``unshare`` with no network but loopback."""

    NAMESPACES = ("--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--ipc", "--uts")

    def __init__(self, spec: SandboxSpec, python: str | None = None) -> None:
        self.spec = spec
        self.python = python or sys.executable
        unshare = shutil.which("unshare")
        if unshare is None:
            raise SandboxError("the namespace runtime needs unshare (util-linux)")
        self._process = ManagedProcess(
            name=spec.name,
            argv=self.argv(unshare),
            env=spec.process_env(),
            log_path=spec.log_path,
            cwd=spec.image_dir,
        )

    def argv(self, unshare: str = "unshare") -> list[str]:
        command = list(self.spec.command)
        # "python3" in a spec means the interpreter whose libraries the enclave uses, run
        # with -S: no site hooks, so an editable install of this project cannot resolve
        # modules missing from the image from the source tree. Libraries come from the
        # PYTHONPATH built by enclave_environment (image first, then site-packages).
        if command and command[0] in ("python", "python3"):
            command[0:1] = [self.python, "-S"]
        init = [self.python, "-I", str(SANDBOX_INIT), "--hostname", self.spec.hostname, "--"]
        return [unshare, *self.NAMESPACES, "--", *init, *command]

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        # The sandbox init is PID 1 inside; it forwards SIGTERM to the program. If it
        # does not exit in time, SIGKILL on the group kills unshare, whose --kill-child
        # takes the init and with it the whole PID namespace.
        self._process.stop()

    def running(self) -> bool:
        return self._process.running()

    def returncode(self) -> int | None:
        return self._process.returncode()

    def pids(self) -> list[int]:
        pid = self._process.pid
        return [pid] if pid is not None and self.running() else []

    def describe(self) -> str:
        return "namespaces net,pid,mnt,ipc,uts"


@dataclass(frozen=True)
class ContainerImageSpec:
    """A build context (``Dockerfile``, ``app/``, ``deps/``) and the base to build it on."""

    context_dir: Path
    tag: str
    base_image: str


class ContainerSandbox:
    """The program in a container with ``network_mode="none"``."""

    def __init__(self, spec: SandboxSpec, image: ContainerImageSpec, docker_host: str | None = None) -> None:
        self.spec = spec
        self.image = image
        self.docker_host = docker_host
        self._client: Any = None
        self._container: Any = None
        self._log_thread: threading.Thread | None = None

    def _docker(self) -> Any:
        if self._client is None:
            import docker  # the docker SDK is only needed by this runtime

            self._client = (
                docker.DockerClient(base_url=self.docker_host) if self.docker_host else docker.from_env()
            )
        return self._client

    def build(self) -> str:
        client = self._docker()
        try:
            with step(f"docker build {self.image.tag} FROM {self.image.base_image}"):
                image, _ = client.images.build(
                    path=str(self.image.context_dir),
                    tag=self.image.tag,
                    buildargs={"BASE_IMAGE": self.image.base_image},
                    rm=True,
                    forcerm=True,
                    network_mode="none",
                )
        except Exception as exc:
            raise SandboxError(f"building the enclave image {self.image.tag} failed: {exc}") from exc
        return str(image.id)

    def start(self) -> None:
        client = self._docker()
        self.build()
        mounts = {
            str(path): {"bind": str(path), "mode": "rw"}
            for path in (self.spec.vsock_dir, *self.spec.shared_dirs)
        }
        if self.spec.preload is not None:
            library_dir = str(self.spec.preload.library.parent)
            mounts[library_dir] = {"bind": library_dir, "mode": "ro"}
        command = list(self.spec.command)
        env = self.spec.process_env()
        # Inside the image the code and its libraries live at fixed places (see the Dockerfile).
        env.pop("PYTHONPATH", None)
        env.pop("PATH", None)
        try:
            self._container = client.containers.run(
                self.image.tag,
                command=command,
                detach=True,
                network_mode="none",
                environment=env,
                hostname=self.spec.hostname,
                volumes=mounts,
                # Unique per launch: several emulators (or a relaunch racing a slow removal) may
                # run the same image at once.
                name=f"{self.spec.name}-{self.image.tag.rsplit(':', 1)[-1]}-{secrets.token_hex(4)}",
                labels={"nitro-vault-emulator": "enclave"},
            )
        except Exception as exc:
            raise SandboxError(f"starting the enclave container failed: {exc}") from exc
        self._log_thread = threading.Thread(
            target=self._copy_logs, name=f"{self.spec.name}-logs", daemon=True
        )
        self._log_thread.start()

    def _copy_logs(self) -> None:
        container = self._container
        if container is None:
            return
        with open(self.spec.log_path, "ab") as log, contextlib.suppress(Exception):
            for chunk in container.logs(stream=True, follow=True):
                log.write(chunk)
                log.flush()

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop(timeout=5)
            with contextlib.suppress(Exception):
                container.remove(force=True)
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
            self._log_thread = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    def running(self) -> bool:
        if self._container is None:
            return False
        try:
            self._container.reload()
        except Exception:  # noqa: BLE001 - any engine error means the container is not usable
            return False
        return bool(self._container.status == "running")

    def pids(self) -> list[int]:
        if self._container is None:
            return []
        with contextlib.suppress(Exception):
            pid = int(self._container.attrs["State"]["Pid"])
            if pid > 0:
                return [pid]
        return []

    def describe(self) -> str:
        return f"container {self.image.tag} (network none)"
