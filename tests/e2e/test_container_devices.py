"""Device mode in the container runtime (``--enclave-runtime container --enclave-devices``).

The enclave container runs with its production configuration (``/dev/nsm``, ``AF_VSOCK``)
and the preload library, whose directory the sandbox bind-mounts read-only at the same
path; the library is never part of the image. The end-to-end suite runs each runtime in
its default mode (the container's: Unix sockets), so this module pins device mode. It runs
when ``VAULT_E2E_STACKS`` names ``moto/container`` (``nox -s e2e`` does).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import stacks
from e2e.security.targets import DEVICES_ENV, running_stack
from emulator.aws.backends import default_cache_dir
from emulator.daemon.state import EmulatorState
from emulator.host.system.dockerd import DockerEngineConfig, running_engine
from emulator.nitro.preload import LIBRARY_NAME, NSM_SOCKET_ENV, VSOCK_CID_ENV, VSOCK_DIR_ENV, preload_for
from emulator.tools.client import VaultClient
from vault.common.transport import DEFAULT_ENCLAVE_CID, PARENT_CID

STACK = "moto/container"
CHILD_TIMEOUT = 60

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting a Docker engine needs root"),
]

#: A host process whose /dev/nsm is led to the NSM socket in argv[1].
HOST_CALLER = """
import json
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from vault.enclave.nsm import DeviceNsm, NsmError

key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
try:
    document = DeviceNsm().attestation(public_key=spki)
    print(json.dumps({"document": len(document)}))
except NsmError as exc:
    print(json.dumps({"code": exc.code}))
"""


@pytest.fixture(scope="module")
def device_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorState]:
    if STACK not in stacks():
        pytest.skip(f"{STACK} is not among the stacks under test (VAULT_E2E_STACKS)")
    with contextlib.ExitStack() as started:
        # Only while the configuration is made: the other modules' stacks keep their mode.
        with pytest.MonkeyPatch.context() as env:
            env.setenv(DEVICES_ENV, "1")
            state = started.enter_context(running_stack(STACK, tmp_path_factory))
        yield state


@pytest.fixture(scope="module")
def enclave_container(device_stack: EmulatorState) -> Iterator[Any]:
    import docker  # the docker SDK: only this runtime's tests need it

    host = running_engine(DockerEngineConfig(state_dir=default_cache_dir()))
    assert host is not None, "the container runtime's engine is not running"
    client = docker.DockerClient(base_url=host)
    try:
        vsock_dir = str(device_stack.layout.vsock_dir)
        ours = [
            container
            for container in client.containers.list(filters={"label": "nitro-vault-emulator=enclave"})
            if f"{VSOCK_DIR_ENV}={vsock_dir}" in container.attrs["Config"]["Env"]
        ]
        assert len(ours) == 1, f"expected this emulator's one enclave container, found {len(ours)}"
        yield ours[0]
    finally:
        client.close()


def test_the_enclave_container_runs_in_device_mode(
    device_stack: EmulatorState, enclave_container: Any
) -> None:
    env = dict(item.split("=", 1) for item in enclave_container.attrs["Config"]["Env"])
    library = Path(env["LD_PRELOAD"])
    assert library.name == LIBRARY_NAME
    assert env[NSM_SOCKET_ENV] == str(device_stack.facts["nsm_socket"])
    assert env[VSOCK_CID_ENV] == str(DEFAULT_ENCLAVE_CID)
    # Nothing tells the enclave about the emulator's sockets: it uses /dev/nsm and AF_VSOCK.
    assert not {"VAULT_NSM", "VAULT_VSOCK_TRANSPORT", "VAULT_VSOCK_UDS_DIR"} & set(env)
    mounts = {mount["Destination"]: mount for mount in enclave_container.attrs["Mounts"]}
    assert mounts[str(library.parent)]["RW"] is False
    assert not list(Path(str(device_stack.facts["running_image_dir"])).rglob(LIBRARY_NAME))
    # The enclave answers through the preload: a decrypt round trip.
    with VaultClient(device_stack.api_url) as client:
        vault_id = client.create({"first_name": "Devicemode Firstname"})
        result = client.decrypt(vault_id, ["first_name"], reason="container device mode")
    assert result.data == {"first_name": "Devicemode Firstname"} and result.errors == []


def test_the_enclave_cannot_change_the_library_the_parent_loads(
    device_stack: EmulatorState, enclave_container: Any
) -> None:
    # The parent on the host preloads the same file: an enclave that could write it would
    # run its code in the parent.
    env = dict(item.split("=", 1) for item in enclave_container.attrs["Config"]["Env"])
    library = env["LD_PRELOAD"]
    before = Path(library).read_bytes()
    code, output = enclave_container.exec_run(
        ["python3", "-S", "-c", f"open({library!r}, 'r+b').write(b'x')"], environment={"LD_PRELOAD": ""}
    )
    assert code != 0 and b"Read-only file system" in output
    assert Path(library).read_bytes() == before


def test_a_host_process_gets_no_document_from_the_enclaves_nsm(device_stack: EmulatorState) -> None:
    socket_path = Path(str(device_stack.facts["nsm_socket"]))
    preload = preload_for(
        default_cache_dir() / "preload",
        vsock_dir=device_stack.layout.vsock_dir,
        local_cid=PARENT_CID,
        nsm_socket=socket_path,
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **preload.env(),
    }
    result = subprocess.run(
        [sys.executable, "-c", HOST_CALLER], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    assert result.returncode == 0, result.stderr
    # The NSM socket answers the container's PID namespace only.
    assert json.loads(result.stdout) == {"code": "InvalidOperation"}
