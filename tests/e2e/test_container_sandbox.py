"""The container runtime: the enclave image runs with no network, vsock directory shared."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.nitro.image import assemble_image, container_build_context
from emulator.nitro.sandbox import ContainerImageSpec, ContainerSandbox, SandboxSpec, enclave_environment

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting a Docker engine needs root"),
]

PROBE = """
import errno, json, socket, sys
report = {"interfaces": [name for _, name in socket.if_nameindex()]}
# The host's loopback listener, from inside: another network namespace.
sock = socket.socket()
sock.settimeout(2)
try:
    sock.connect(("127.0.0.1", int(sys.argv[2])))
    report["tcp_host"] = "connected"
except OSError as exc:
    report["tcp_host"] = errno.errorcode.get(exc.errno, str(exc))
# No IPv4 route at all: nothing can leave (checked without sending anything anywhere).
with open("/proc/net/route") as table:
    report["routes"] = [line.split()[0] for line in table.read().splitlines()[1:]]
unix = socket.socket(socket.AF_UNIX)
unix.connect(sys.argv[1])
unix.sendall(json.dumps(report).encode())
unix.close()
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from emulator.aws.backends.config import default_cache_dir
    from emulator.host.system.base_image import BaseImageSpec, ensure_base_image
    from emulator.host.system.dockerd import DockerEngine, DockerEngineConfig, ensure_engine

    cache = default_cache_dir()
    config = DockerEngineConfig(state_dir=cache)
    try:
        status = ensure_engine(config)
    except Exception as exc:  # no engine and none can be installed here
        pytest.skip(f"no Docker engine: {exc}")
    try:
        base = ensure_base_image(BaseImageSpec(), status.docker_host, cache / "base-image").name
        yield status.docker_host, base
    finally:
        if status.started:
            DockerEngine(config).stop()


def test_no_outbound_connection_from_the_enclave_container(engine: tuple[str, str], tmp_path: Path) -> None:
    docker_host, base = engine
    image = assemble_image(tmp_path / "image")
    context = container_build_context(image, tmp_path / "context", tmp_path / "deps")
    vsock_dir = Path(f"/tmp/nv-probe-{os.getpid()}")
    vsock_dir.mkdir(exist_ok=True)
    path = vsock_dir / "probe.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    server.settimeout(120)
    host_listener = socket.create_server(("127.0.0.1", 0))
    spec = SandboxSpec(
        name="probe",
        image_dir=image.directory,
        vsock_dir=vsock_dir,
        env=enclave_environment(image_dir=image.directory, extra={}),
        log_path=tmp_path / "probe.log",
        command=["python3", "-c", PROBE, str(path), str(host_listener.getsockname()[1])],
    )
    sandbox = ContainerSandbox(
        spec, ContainerImageSpec(context, "nitro-vault-enclave:probe", base), docker_host
    )
    try:
        sandbox.start()
        connection, _ = server.accept()
        report = json.loads(connection.recv(65536))
        connection.close()
        deadline = time.monotonic() + 30
        while sandbox.running() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sandbox.stop()
        server.close()
        host_listener.close()
        path.unlink(missing_ok=True)
        vsock_dir.rmdir()
    assert report["interfaces"] == ["lo"]
    assert report["tcp_host"] == "ECONNREFUSED"
    assert report["routes"] == []
