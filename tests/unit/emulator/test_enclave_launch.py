"""Every launch of the enclave measures the image directory as it is, and runs that copy.

The sandbox here is a stand-in (the test process itself, listening on the enclave's vsock
socket), so what is checked is the launch itself: which directory is copied, measured,
registered with the NSM and handed to the sandbox.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.daemon.components import EmulatorParts, build_components
from emulator.daemon.components.base import Context
from emulator.daemon.config import EmulatorConfig, EnclaveRuntime
from emulator.host import procfs
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.cose import decode_sign1
from emulator.nitro.measure import measure_image
from emulator.nitro.sandbox import SandboxSpec
from vault.common.transport import ENCLAVE_PORT
from vault.enclave.nsm import NsmError, SocketNsm

CHANGED_FILE = Path("vault") / "enclave" / "__main__.py"


class StandInSandbox:
    """Listens where the enclave would; its process is this test's."""

    def __init__(self, spec: SandboxSpec, cid: int) -> None:
        self.spec = spec
        self.socket_path = spec.vsock_dir / f"vsock-{cid}-{ENCLAVE_PORT}.sock"
        self.listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(1)
        self.listener = listener

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            self.socket_path.unlink(missing_ok=True)

    def running(self) -> bool:
        return self.listener is not None

    def pids(self) -> list[int]:
        # The NSM socket gets bound to this process tree: the test may ask it for documents.
        return [os.getpid()] if self.running() else []

    def describe(self) -> str:
        return "stand-in"


class ContainerStandIn(StandInSandbox):
    """A "container": its process is a ``sleep`` in a PID namespace of its own."""

    def __init__(self, spec: SandboxSpec, cid: int) -> None:
        super().__init__(spec, cid)
        self.outer: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        super().start()
        self.outer = subprocess.Popen(["unshare", "--pid", "--fork", "--", "sleep", "60"])

    def stop(self) -> None:
        super().stop()
        if self.outer is not None:
            self.outer.kill()
            self.outer.wait()
            self.outer = None

    def pids(self) -> list[int]:
        # What ContainerSandbox answers: the container's first process, inside the namespace.
        return procfs.children(self.outer.pid) if self.outer is not None else []


def start_parts(runtime: EnclaveRuntime, stand_in: type[StandInSandbox]) -> Iterator[EmulatorParts]:
    # Unix socket paths must fit in sun_path (108 bytes); pytest's tmp_path may not.
    state_dir = Path(tempfile.mkdtemp(prefix="launch-"))
    config = EmulatorConfig(state_dir=state_dir, enclave_runtime=runtime, port=0)
    config.layout.ensure()
    built = build_components(Context(config, config.layout))
    built.enclave.make_sandbox = lambda spec: stand_in(spec, config.enclave_cid)
    for component in (built.image, built.pki, built.nsm, built.enclave):
        component.start()
    try:
        yield built
    finally:
        built.enclave.stop()
        built.nsm.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def parts() -> Iterator[EmulatorParts]:
    yield from start_parts("namespace", StandInSandbox)


@pytest.fixture
def container_parts() -> Iterator[EmulatorParts]:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("a PID namespace of its own needs unshare and root")
    yield from start_parts("container", ContainerStandIn)


def attested_pcr0(parts: EmulatorParts) -> str:
    """PCR0 of a document from the running enclave's NSM socket."""
    document = SocketNsm(str(parts.enclave.context.facts["nsm_socket"])).attestation()
    pcr0 = AttestationDocument.from_cbor(decode_sign1(document).payload).pcr_hex(0)
    assert pcr0 is not None
    return pcr0


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_up_measures_and_runs_a_copy_of_the_image(parts: EmulatorParts) -> None:
    policy = parts.image.built
    sandbox = parts.enclave.sandbox
    assert sandbox is not None
    run_dir = sandbox.spec.image_dir
    assert run_dir != policy.image.directory
    assert (run_dir / CHANGED_FILE).read_bytes() == (policy.image.directory / CHANGED_FILE).read_bytes()
    assert measure_image(run_dir).pcr0 == policy.measurements.pcr0 == attested_pcr0(parts)
    assert sandbox.spec.env["PYTHONPATH"].split(":")[0] == str(run_dir)
    # Read-only, as a loaded EIF; gone when the enclave stops.
    assert (run_dir / CHANGED_FILE).stat().st_mode & 0o222 == 0
    assert run_dir.stat().st_mode & 0o222 == 0
    parts.enclave.stop()
    assert not run_dir.exists()


def test_a_relaunch_measures_the_image_as_it_is_now(parts: EmulatorParts) -> None:
    policy = parts.image.built
    source = policy.image.directory
    first_socket = Path(str(parts.enclave.context.facts["nsm_socket"]))
    flip_byte(source / CHANGED_FILE)

    changed = parts.enclave.relaunch({})
    assert changed.image_dir == str(source)
    assert changed.policy_pcr0 == policy.measurements.pcr0
    assert changed.pcr0 == measure_image(source).pcr0 != policy.measurements.pcr0
    # The NSM attests the new measurement, on a new socket; the old one is gone.
    assert attested_pcr0(parts) == changed.pcr0
    assert not first_socket.exists()
    launch_dir = Path(changed.launch_dir)
    assert (launch_dir / CHANGED_FILE).read_bytes() == (source / CHANGED_FILE).read_bytes()

    # What runs is the copy measured at launch: a later change to the state dir does not reach it.
    flip_byte(source / CHANGED_FILE, offset=1)
    assert measure_image(launch_dir).pcr0 == changed.pcr0 == attested_pcr0(parts)

    flip_byte(source / CHANGED_FILE, offset=1)
    flip_byte(source / CHANGED_FILE)
    restored = parts.enclave.relaunch({})
    assert restored.pcr0 == restored.policy_pcr0 == attested_pcr0(parts)


def test_a_launch_copies_no_bytecode_cache(parts: EmulatorParts) -> None:
    """The measurement skips caches and the interpreter prefers them: they must not run."""
    source = parts.image.built.image.directory
    cache = source / "vault" / "enclave" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "__main__.cpython-311.pyc").write_bytes(b"not measured")
    relaunched = parts.enclave.relaunch({})
    assert not (Path(relaunched.launch_dir) / "vault" / "enclave" / "__pycache__").exists()
    assert relaunched.pcr0 == relaunched.policy_pcr0


def test_a_relaunch_with_overrides_measures_the_changed_image(parts: EmulatorParts) -> None:
    relaunched = parts.enclave.relaunch({"vault/enclave/extra.py": b"VALUE = 1\n"})
    assert relaunched.image_dir != str(parts.image.built.image.directory)
    assert relaunched.pcr0 == measure_image(Path(relaunched.launch_dir)).pcr0 != relaunched.policy_pcr0
    assert attested_pcr0(parts) == relaunched.pcr0


def test_the_container_runtime_measures_its_build_context(container_parts: EmulatorParts) -> None:
    policy = container_parts.image.built
    sandbox = container_parts.enclave.sandbox
    assert sandbox is not None
    app = sandbox.spec.image_dir
    # What the image is built from: app/ of the build context, measured at this launch.
    assert app.name == "app" and (app.parent / "Dockerfile").is_file()
    assert measure_image(app).pcr0 == policy.measurements.pcr0
    flip_byte(policy.image.directory / CHANGED_FILE)
    changed = container_parts.enclave.relaunch({})
    assert changed.launch_dir == str(app)
    assert changed.pcr0 == measure_image(app).pcr0 != changed.policy_pcr0
    # Bound to the container's PID namespace: this test's process is not in it.
    with pytest.raises(NsmError) as refused:
        SocketNsm(str(container_parts.enclave.context.facts["nsm_socket"])).attestation()
    assert refused.value.code == "InvalidOperation"
