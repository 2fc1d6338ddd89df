"""The ``localstack-container`` backend: LocalStack's own image through testcontainers.

It needs a Docker engine, LocalStack's image (pulled, or present locally) and a
LocalStack auth token; when one is missing, starting fails with
:class:`BackendUnavailable` naming it. There is no fallback to another backend.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
from docker.errors import DockerException, ImageNotFound

from emulator.aws.backends.base import AwsBackend, BackendError, BackendUnavailable
from emulator.aws.backends.config import AUTH_TOKEN_ENV, LOCALSTACK_PERSISTENCE_ENV, BackendConfig
from emulator.host.process import StartupError, free_port, wait_until

if TYPE_CHECKING:
    from testcontainers.community.localstack import LocalStackContainer

_EDGE_PORT = 4566
#: Where LocalStack's image keeps its state (``PERSISTENCE=1``: ``<volume>/state``).
CONTAINER_VOLUME = "/var/lib/localstack"
_DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
_ENGINE_HINT = (
    "start one with `python -m emulator.host.system ensure docker` and export the DOCKER_HOST it prints"
)


class LocalStackContainerBackend(AwsBackend):
    accepts_custom_key_material = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._container: LocalStackContainer | None = None
        self._port: int | None = None

    @property
    def docker_host(self) -> str:
        return self.config.container.docker_host or os.environ.get("DOCKER_HOST") or _DEFAULT_DOCKER_HOST

    @property
    def volume_dir(self) -> Path:
        """The host directory mounted at the image's ``/var/lib/localstack`` under ``persist``."""
        return self.config.state_dir / "localstack-volume"

    def persistence_environment(self) -> dict[str, str]:
        """The image's settings under ``config.persist`` (none without it)."""
        if not self.config.persist:
            return {}
        return dict(LOCALSTACK_PERSISTENCE_ENV)

    @property
    def auth_token(self) -> str | None:
        return self.config.container.auth_token or os.environ.get(AUTH_TOKEN_ENV) or None

    def _docker_client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, timeout=120)

    def prepare(self) -> None:
        """Check every prerequisite and report all that are missing at once."""
        missing: list[str] = []
        if self.auth_token is None:
            missing.append(f"a LocalStack auth token (set {AUTH_TOKEN_ENV}; LocalStack's image requires one)")
        try:
            client = self._docker_client()
            client.ping()
        except DockerException as exc:
            missing.append(f"a Docker engine at {self.docker_host} ({_ENGINE_HINT}): {exc}")
        else:
            image = self.config.container.image
            try:
                client.images.get(image)
            except ImageNotFound:
                if not self.config.container.pull:
                    missing.append(f"the image {image} (not loaded in the engine, and pulling is off)")
                else:
                    try:
                        client.images.pull(image)
                    except DockerException as exc:
                        missing.append(
                            f"the image {image} (not loaded in the engine; pulling it failed: {exc})"
                        )
            finally:
                client.close()
        if missing:
            raise BackendUnavailable("the localstack-container backend needs " + "; and ".join(missing))

    def _start(self) -> None:
        # Imported here: testcontainers reads its settings at import time, after the caller set them.
        from testcontainers.community.localstack import LocalStackContainer
        from testcontainers.core.config import ConnectionMode, testcontainers_config  # likewise

        # The Ryuk reaper's image cannot be pulled here, and stop() removes the container
        # anyway; and a /.dockerenv file makes testcontainers guess the wrong network path.
        testcontainers_config.ryuk_disabled = True
        testcontainers_config.connection_mode_override = ConnectionMode.docker_host
        self._port = self.config.port or free_port()
        container = (
            LocalStackContainer(
                image=self.config.container.image,
                edge_port=_EDGE_PORT,
                region_name=self.config.region,
                docker_client_kw={"environment": {"DOCKER_HOST": self.docker_host}},
            )
            .with_services(*self.config.services)
            .with_env(AUTH_TOKEN_ENV, self.auth_token or "")
        )
        if self.config.persist:
            # The image saves its services' state under its volume on shutdown and loads
            # it on start; DynamoDB Local keeps its files there too.
            self.volume_dir.mkdir(parents=True, exist_ok=True)
            for name, value in self.persistence_environment().items():
                container = container.with_env(name, value)
            container = container.with_volume_mapping(str(self.volume_dir), CONTAINER_VOLUME, "rw")
        # docker-py accepts (host address, host port), which testcontainers' annotation
        # omits: publish on 127.0.0.1 only, not on every interface.
        container.ports[str(_EDGE_PORT)] = ("127.0.0.1", self._port)  # type: ignore[assignment]
        self._container = container
        began = time.monotonic()
        try:
            container.start(timeout=self.config.startup_timeout)
        except (DockerException, TimeoutError) as exc:
            # TimeoutError: testcontainers saw no "Ready." in the log within the timeout.
            raise BackendError(f"the LocalStack container did not start: {exc}") from exc
        # As for the host process: DynamoDB starts on its first request, so make one now.
        remaining = max(1.0, self.config.startup_timeout - (time.monotonic() - began))
        try:
            wait_until(self.health, timeout=remaining, what="the LocalStack container's DynamoDB and KMS")
        except StartupError as exc:
            raise BackendError(str(exc)) from exc

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None and container.get_wrapped_container() is not None:
            container.stop()

    def pids(self) -> list[int]:
        # The container's processes belong to the Docker engine, not to the emulator.
        return []

    @property
    def endpoint_url(self) -> str:
        if self._container is None or self._port is None:
            raise BackendError("the localstack-container backend is not running")
        return f"http://127.0.0.1:{self._port}"

    def describe(self) -> dict[str, Any]:
        wrapped = self._container.get_wrapped_container() if self._container is not None else None
        return {
            **super().describe(),
            "image": self.config.container.image,
            "docker_host": self.docker_host,
            "container_id": wrapped.id if wrapped is not None else None,
            "volume_dir": str(self.volume_dir) if self.config.persist else None,
        }
