"""The Docker engine setup: an engine (ours if none runs), the local base image, no-network containers.

Uses the engine in ``$DOCKER_HOST`` (or the state directory's, or the system's) when
one answers, as in CI after ``python -m emulator.host.system ensure docker base-image``;
otherwise starts a dockerd of its own in a temporary state directory, builds the base
image there with debootstrap, and stops the engine at the end.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from emulator.aws.backends import BackendConfig, BackendUnavailable, ContainerSettings, start_backend
from emulator.host.procfs import alive, descendants
from emulator.host.system.base_image import BaseImageResult, BaseImageSpec, ensure_base_image
from emulator.host.system.dockerd import DockerEngine, DockerEngineConfig, engine_answers, running_engine

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

STATE_DIR_ENV = "NITRO_VAULT_EMULATOR_STATE_DIR"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).absolute() if configured else tmp_path_factory.mktemp("docker-state")


@pytest.fixture(scope="module")
def docker_host(state_dir: Path) -> Iterator[str]:
    config = DockerEngineConfig(state_dir)
    existing = running_engine(config)
    if existing is not None:
        yield existing
        return
    if os.geteuid() != 0:
        pytest.skip("no Docker engine answers, and starting dockerd needs root")
    with DockerEngine(config) as engine:
        engine.start()
        print(f"\ndockerd start: {engine.started_seconds:.2f} s")
        assert engine.pid is not None
        owned = [engine.pid, *descendants(engine.pid)]
        yield config.docker_host
    # Stopped by the context manager: dockerd and its containerd are gone, and so is the socket.
    assert [pid for pid in owned if alive(pid)] == []
    assert not config.socket.exists()
    assert not engine_answers(config.docker_host)


@pytest.fixture(scope="module")
def client(docker_host: str) -> Iterator[docker.DockerClient]:
    connected = docker.DockerClient(base_url=docker_host, timeout=120)
    try:
        yield connected
    finally:
        connected.close()


@pytest.fixture(scope="module")
def base_image(docker_host: str, state_dir: Path) -> BaseImageResult:
    result = ensure_base_image(BaseImageSpec(), docker_host, state_dir / "docker" / "build")
    verb = "built" if result.built else "found"
    print(f"\nbase image {result.name}: {verb} in {result.seconds:.1f} s (mirror {result.mirror})")
    return result


def test_engine_answers(client: docker.DockerClient) -> None:
    assert client.ping()
    assert client.version()["ApiVersion"]


def test_base_image_has_debian_python(client: docker.DockerClient, base_image: BaseImageResult) -> None:
    output = client.containers.run(
        base_image.name,
        [
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2]); print(open('/etc/debian_version').read())",
        ],
        network_mode="none",
        remove=True,
    )
    version, debian = output.decode().split("\n", 1)
    assert version.startswith("3.")
    assert debian.strip()[0].isdigit()


def test_a_container_without_network_has_only_loopback(
    client: docker.DockerClient, base_image: BaseImageResult
) -> None:
    # A server on the host's loopback: a container with a network of its own cannot reach it.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        script = textwrap.dedent(
            f"""
            import os, socket
            print("interfaces", ",".join(sorted(os.listdir("/sys/class/net"))))
            routes = open("/proc/net/route").read().splitlines()[1:]
            print("routes", len(routes))
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                print("host-loopback reachable")
            except OSError as error:
                print("host-loopback unreachable", type(error).__name__)
            """
        )
        began = time.monotonic()
        output = client.containers.run(
            base_image.name, ["python3", "-c", script], network_mode="none", remove=True
        ).decode()
        print(f"\ncontainer run (--network none): {time.monotonic() - began:.2f} s")
    lines = dict(line.split(" ", 1) for line in output.strip().splitlines())
    assert lines["interfaces"] == "lo"
    assert lines["routes"] == "0"
    assert lines["host-loopback"].startswith("unreachable")


def test_localstack_container_names_a_missing_image(docker_host: str, tmp_path: Path) -> None:
    # With an engine and a token, the image is the last prerequisite; pulling stays off
    # because no registry can be reached from here.
    settings = ContainerSettings(
        image="nitro-vault/absent-localstack:none", auth_token="ls-test", docker_host=docker_host, pull=False
    )
    config = BackendConfig(kind="localstack-container", state_dir=tmp_path, container=settings)
    with pytest.raises(BackendUnavailable) as refused:
        start_backend(config)
    message = str(refused.value)
    assert "nitro-vault/absent-localstack:none" in message
    assert "Docker engine" not in message
    assert "LOCALSTACK_AUTH_TOKEN" not in message
