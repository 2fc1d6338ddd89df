"""The preload library: unmodified programs reach the emulated NSM (/dev/nsm) and vsock (AF_VSOCK).

Every process here runs with the library and a vsock directory under a temporary
directory: ``AF_VSOCK`` never reaches the kernel (the library refuses it without a
directory), so nothing in these tests touches a real vsock.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.daemon.components import build_components
from emulator.daemon.components.base import Context
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.lifecycle import NoCompiler, check_before_start
from emulator.nitro.attestation import verify_document
from emulator.nitro.measure import measure_image
from emulator.nitro.nsm import NsmService, ProcessTree
from emulator.nitro.pki import TestPki
from emulator.nitro.preload import (
    LIBRARY_NAME,
    NSM_SOCKET_ENV,
    VSOCK_CID_ENV,
    VSOCK_DIR_ENV,
    DeviceMapping,
    Preload,
    PreloadError,
    build_library,
    find_compiler,
)
from emulator.nitro.sandbox import NamespaceSandbox, SandboxSpec, enclave_environment
from emulator.tools.cli import build_parser, config_from_args
from vault.common.transport import DEFAULT_ENCLAVE_CID, PARENT_CID, VMADDR_CID_ANY
from vault.infra.key_policy import EnclaveMeasurements, pcr3_for_role_arn

from .test_enclave_launch import StandInSandbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "nsm-pcr0" / "main.c"
MEASUREMENTS = EnclaveMeasurements(pcr0="a0" * 48, pcr1="b1" * 48, pcr2="c2" * 48, pcr8="d8" * 48)
PCR3 = pcr3_for_role_arn("arn:aws:iam::123456789012:role/nitro-vault-instance")
CHILD_TIMEOUT = 60

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None and shutil.which("clang") is None,
    reason="the preload library needs a C compiler",
)


@pytest.fixture(scope="module")
def cache_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="preload-cache-") as directory:
        yield Path(directory)


@pytest.fixture(scope="module")
def library(cache_dir: Path) -> Path:
    return build_library(cache_dir)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki.create()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sun_path holds 108 bytes: pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="pl-", dir="/tmp") as directory:
        yield Path(directory)


@pytest.fixture
def vsock_dir(short_dir: Path) -> Path:
    path = short_dir / "vsock"
    path.mkdir()
    return path


@pytest.fixture
def nsm(pki: TestPki, short_dir: Path) -> Iterator[NsmService]:
    with NsmService(pki, short_dir / "nsm") as service:
        yield service


@pytest.fixture(scope="module")
def nsm_pcr0(cache_dir: Path) -> Path:
    """The C example, built as its header says."""
    compiler = find_compiler()
    binary = cache_dir / "nsm-pcr0"
    subprocess.run(
        [*compiler, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(EXAMPLE)],
        check=True,
        timeout=CHILD_TIMEOUT,
    )
    return binary


def child_env(library: Path, mapping: DeviceMapping) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(Preload(library, mapping).env())
    return env


def run(
    argv: list[str], env: dict[str, str], *, check: bool = True, timeout: float = CHILD_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv[0]} exited {result.returncode}: {result.stderr}")
    return result


def python(
    script: str, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-c", textwrap.dedent(script), *args], env, check=check)


def wait_for_socket(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_socket():
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear")


# -- building --------------------------------------------------------------------------------


def test_the_library_is_built_once_per_source_and_compiler(cache_dir: Path, library: Path) -> None:
    assert library.name == LIBRARY_NAME and library.parent.parent == cache_dir
    built = library.stat().st_mtime_ns
    assert build_library(cache_dir) == library
    assert library.stat().st_mtime_ns == built
    # Nothing half-written is left beside it.
    assert sorted(path.name for path in library.parent.iterdir()) == [LIBRARY_NAME]
    exported = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True)
    if exported.returncode == 0:
        names = {line.split()[-1] for line in exported.stdout.splitlines()}
        assert {"open", "openat", "ioctl", "socket", "bind", "connect", "accept4", "getpeername"} <= names
        assert not any(name.startswith(("nsm_", "vsock_", "track")) for name in names)


def test_no_compiler_is_a_clear_error(short_dir: Path) -> None:
    empty = short_dir / "bin"
    empty.mkdir()
    with pytest.raises(PreloadError) as missing:
        build_library(short_dir / "cache", environ={"PATH": str(empty)})
    assert missing.value.code == "preload.no_compiler"
    assert "C compiler" in str(missing.value)
    with pytest.raises(PreloadError) as named:
        build_library(short_dir / "cache", environ={"PATH": str(empty), "CC": "no-such-cc"})
    assert named.value.code == "preload.no_compiler"
    assert not (short_dir / "cache").exists()


def test_a_failing_compiler_is_a_clear_error(short_dir: Path) -> None:
    fake = short_dir / "bin"
    fake.mkdir()
    script = fake / "cc"
    script.write_text("#!/bin/sh\necho 'cc: fatal error: out of cheese' >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(PreloadError) as failed:
        build_library(short_dir / "cache", environ={"PATH": str(fake)})
    assert failed.value.code == "preload.compile_failed"
    assert "out of cheese" in str(failed.value)
    assert [path.name for path in (short_dir / "cache").rglob("*") if path.is_file()] == []


def test_the_mapping_environment(library: Path, short_dir: Path) -> None:
    mapping = DeviceMapping(vsock_dir=short_dir, local_cid=16, nsm_socket=short_dir / "nsm.sock")
    env = Preload(library, mapping).env({"LD_PRELOAD": "/opt/other.so"})
    assert env == {
        "LD_PRELOAD": f"{library} /opt/other.so",
        VSOCK_DIR_ENV: str(short_dir),
        VSOCK_CID_ENV: "16",
        NSM_SOCKET_ENV: str(short_dir / "nsm.sock"),
    }
    with pytest.raises(ValueError):
        DeviceMapping(vsock_dir=short_dir, local_cid=VMADDR_CID_ANY)


# -- /dev/nsm -------------------------------------------------------------------------------


def test_the_c_example_prints_pcr0_through_the_real_ioctl(
    library: Path, nsm_pcr0: Path, nsm: NsmService, vsock_dir: Path
) -> None:
    # The NSM admits this process's tree: the example runs as its child.
    path = nsm.register_enclave("enc-c", MEASUREMENTS, PCR3, pid=os.getpid())
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path))
    assert run([str(nsm_pcr0)], env).stdout == MEASUREMENTS.pcr0 + "\n"
    assert run([str(nsm_pcr0), "--describe"], env).stdout == MEASUREMENTS.pcr0 + "\n"


def test_the_c_example_reports_a_refusal_and_a_missing_device(
    library: Path, nsm_pcr0: Path, nsm: NsmService, vsock_dir: Path
) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = nsm.register_enclave("enc-other", MEASUREMENTS, PCR3, pid=stranger.pid)
        env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path))
        refused = run([str(nsm_pcr0)], env, check=False)
    finally:
        stranger.kill()
        stranger.wait()
    assert refused.returncode == 1 and refused.stdout == ""
    assert "refused the request: InvalidOperation" in refused.stderr
    # Without an NSM socket there is no /dev/nsm, as on a machine without the device.
    missing = run(
        [str(nsm_pcr0)], child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16)), check=False
    )
    assert missing.returncode == 1 and "open /dev/nsm: No such file or directory" in missing.stderr


DEVICE_NSM = """
import json, sys
from vault.enclave.nsm import DeviceNsm, nsm_from_env
nsm = nsm_from_env()  # VAULT_NSM unset: the production default, /dev/nsm
assert isinstance(nsm, DeviceNsm), nsm
document = nsm.attestation(public_key=b"spki", user_data=b"user", nonce=b"nonce")
pcr0 = nsm.describe_pcr(0)
extended = nsm.extend_pcr(16, b"measured")
nsm.lock_pcr(16)
described = nsm.describe_nsm()
print(json.dumps({
    "document": document.hex(), "pcr0": pcr0.value.hex(), "pcr0_locked": pcr0.locked,
    "pcr16": extended.hex(), "pcr16_locked": nsm.describe_pcr(16).locked,
    "max_pcrs": described.max_pcrs, "random": len(nsm.get_random()),
}))
"""


def test_the_products_device_nsm_works_under_the_preload(
    library: Path, nsm: NsmService, vsock_dir: Path, pki: TestPki
) -> None:
    path = nsm.register_enclave("enc-py", MEASUREMENTS, PCR3, pid=os.getpid())
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path))
    report = json.loads(python(DEVICE_NSM, env).stdout)
    verified = verify_document(
        bytes.fromhex(report["document"]),
        pki.root.certificate,
        now=dt.datetime.now(dt.UTC),
        max_age=dt.timedelta(minutes=5),
    )
    assert verified.pcr_hex(0) == MEASUREMENTS.pcr0 and verified.pcr_hex(3) == PCR3
    assert (verified.public_key, verified.user_data, verified.nonce) == (b"spki", b"user", b"nonce")
    assert report["pcr0"] == MEASUREMENTS.pcr0 and report["pcr0_locked"] is True
    assert report["pcr16"] == nsm.pcrs("enc-py")[16].hex() and report["pcr16_locked"] is True
    assert report["max_pcrs"] == 32 and report["random"] == 256


RAW_IOCTL = """
import ctypes, errno, fcntl, json, os, struct
import cbor2
from vault.enclave.nsm import NSM_IOCTL_RAW

def call(fd, request, capacity, code=NSM_IOCTL_RAW):
    req = ctypes.create_string_buffer(request, len(request))
    resp = ctypes.create_string_buffer(max(capacity, 1))
    raw = bytearray(
        struct.pack("=QQQQ", ctypes.addressof(req), len(request), ctypes.addressof(resp), capacity)
    )
    try:
        fcntl.ioctl(fd, code, raw, True)
    except OSError as exc:
        return errno.errorcode[exc.errno], None
    length = struct.unpack("=QQQQ", bytes(raw))[3]
    return length, resp.raw[:length]

fd = os.open("/dev/nsm", os.O_RDWR | os.O_CLOEXEC)
full_length, full = call(fd, cbor2.dumps({"DescribePCR": {"index": 0}}), 0x3000)
short_length, short = call(fd, cbor2.dumps({"DescribePCR": {"index": 0}}), 10)
too_large, _ = call(fd, b"\\xa0" * 0x1001, 0x3000)
wrong_code, _ = call(fd, b"", 16, code=0xC0200A01)
# The descriptor stays usable across idle time and other calls (each ioctl connects anew).
again_length, again = call(fd, cbor2.dumps("DescribeNSM"), 0x3000)
dup = os.dup(fd)
os.close(fd)
dup_length, _ = call(dup, cbor2.dumps({"DescribePCR": {"index": 0}}), 0x3000)
print(json.dumps({
    "full": full.hex(), "full_length": full_length, "short": short.hex(), "short_length": short_length,
    "too_large": too_large, "wrong_code": wrong_code, "again": cbor2.loads(again)["DescribeNSM"]["max_pcrs"],
    "dup_length": dup_length,
}))
"""


def test_the_ioctl_behaves_as_the_driver(library: Path, nsm: NsmService, vsock_dir: Path) -> None:
    path = nsm.register_enclave("enc-raw", MEASUREMENTS, PCR3, pid=os.getpid())
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path))
    report = json.loads(python(RAW_IOCTL, env).stdout)
    full = bytes.fromhex(report["full"])
    assert report["full_length"] == len(full) > 48
    # A response that does not fit is truncated to the buffer, as drivers/misc/nsm.c does.
    assert report["short_length"] == 10 and bytes.fromhex(report["short"]) == full[:10]
    assert report["too_large"] == "EMSGSIZE"
    assert report["wrong_code"] == "EINVAL"
    assert report["again"] == 32
    assert report["dup_length"] == len(full)


# -- AF_VSOCK -------------------------------------------------------------------------------


VSOCK_CLIENT = """
import errno, json, socket, sys
from vault.common.transport import AfVsockTransport
port = int(sys.argv[1])
sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect((3, port))
sock.sendall(b"ping")
echoed = sock.recv(16)
report = {"sockname": sock.getsockname(), "peername": sock.getpeername(), "echo": echoed.decode(),
          "family": int(sock.family)}
sock.close()
# The product's production transport, unchanged.
with AfVsockTransport().connect(3, port, timeout=10) as second:
    second.sendall(b"pong")
    report["transport_echo"] = second.recv(16).decode()
    report["transport_sockname"] = second.getsockname()
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).connect((3, port + 1))
except OSError as exc:
    report["nobody"] = errno.errorcode[exc.errno]
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_DGRAM)
except OSError as exc:
    report["dgram"] = errno.errorcode[exc.errno]
print(json.dumps(report))
"""


class EchoServer:
    """A plain Unix-socket listener at a vsock path: what the emulator's own services are."""

    def __init__(self, path: Path, connections: int) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.listener.settimeout(CHILD_TIMEOUT)
        #: Abstract Unix names come back as bytes.
        self.peers: list[bytes | str] = []
        self.thread = threading.Thread(target=self.serve, args=(connections,), daemon=True)
        self.thread.start()

    def serve(self, connections: int) -> None:
        for _ in range(connections):
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return
            with conn:
                self.peers.append(peer)
                conn.settimeout(CHILD_TIMEOUT)
                conn.sendall(conn.recv(16))

    def close(self) -> None:
        self.thread.join(timeout=CHILD_TIMEOUT)
        self.listener.close()


def test_an_af_vsock_client_reaches_a_unix_socket_endpoint(library: Path, vsock_dir: Path) -> None:
    port = 8000
    server = EchoServer(vsock_dir / f"vsock-{PARENT_CID}-{port}.sock", connections=2)
    try:
        env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=DEFAULT_ENCLAVE_CID))
        report = json.loads(python(VSOCK_CLIENT, env, str(port)).stdout)
    finally:
        server.close()
    assert report["echo"] == "ping" and report["transport_echo"] == "pong"
    assert report["family"] == socket.AF_VSOCK
    assert report["peername"] == [PARENT_CID, port]
    cid, own_port = report["sockname"]
    assert cid == DEFAULT_ENCLAVE_CID and 1024 <= own_port < VMADDR_CID_ANY
    # The server sees the client's vsock address in the name the library bound for it.
    assert server.peers[0] == f"\0nitro-emu-vsock:{DEFAULT_ENCLAVE_CID}:{own_port}".encode()
    assert server.peers[1] == "\0nitro-emu-vsock:{}:{}".format(*report["transport_sockname"]).encode()
    # virtio-vsock resets a connection to a port nobody listens on.
    assert report["nobody"] == "ECONNRESET"
    assert report["dgram"] == "ESOCKTNOSUPPORT"


VSOCK_SERVER = """
import json, os, socket, sys
from vault.common.transport import AfVsockTransport, ENCLAVE_PORT
listener = AfVsockTransport().listen(ENCLAVE_PORT)
report = {"listening": listener.getsockname()}
print(json.dumps(report), flush=True)
peers = []
for _ in range(2):
    conn, peer = listener.accept()
    with conn:
        copy = socket.socket(fileno=os.dup(conn.fileno()))  # the family comes from SO_DOMAIN
        peers.append({"accept": peer, "peername": conn.getpeername(), "sockname": conn.getsockname(),
                      "family": int(copy.family)})
        copy.detach()
        conn.sendall(conn.recv(16))
print(json.dumps({"peers": peers}), flush=True)
"""

PRELOAD_PEER = """
import json, socket
sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
sock.settimeout(10)
sock.connect((16, 5050))
sock.sendall(b"from the parent")
print(json.dumps({"echo": sock.recv(32).decode(), "sockname": sock.getsockname()}))
"""


def test_an_af_vsock_server_is_reached_by_unix_and_vsock_clients(library: Path, vsock_dir: Path) -> None:
    enclave = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=DEFAULT_ENCLAVE_CID))
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(VSOCK_SERVER)],
        env=enclave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        listening = json.loads(server.stdout.readline())["listening"]
        # Bound to VMADDR_CID_ANY, at the path of the enclave's own CID (transport.py's layout).
        assert listening == [VMADDR_CID_ANY, 5050]
        path = vsock_dir / f"vsock-{DEFAULT_ENCLAVE_CID}-5050.sock"
        wait_for_socket(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as plain:
            plain.settimeout(CHILD_TIMEOUT)
            plain.connect(str(path))
            plain.sendall(b"plain")
            assert plain.recv(16) == b"plain"
        parent = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=PARENT_CID))
        peer = json.loads(python(PRELOAD_PEER, parent).stdout)
        out, err = server.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert peer["echo"] == "from the parent"
    plain_peer, vsock_peer = json.loads(out)["peers"]
    # A client without a vsock name (outside the preload) shows as the parent, CID 3.
    assert plain_peer["accept"][0] == PARENT_CID and plain_peer["accept"] == plain_peer["peername"]
    assert plain_peer["sockname"] == [DEFAULT_ENCLAVE_CID, 5050]
    assert vsock_peer["accept"] == vsock_peer["peername"] == peer["sockname"]
    assert peer["sockname"][0] == PARENT_CID
    assert plain_peer["family"] == vsock_peer["family"] == socket.AF_VSOCK


BIND_RULES = """
import errno, json, socket, sys
def attempt(address):
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        return sock
    except OSError as exc:
        sock.close()
        return errno.errorcode[exc.errno]
report = {}
first = attempt((socket.VMADDR_CID_ANY, 7000))  # replaces the stale path left by a dead listener
first.listen()
report["stale"] = first.getsockname()
report["in_use"] = attempt((16, 7000))
report["other_cid"] = attempt((3, 7001))
ephemeral = attempt((16, socket.VMADDR_PORT_ANY))
report["ephemeral"] = ephemeral.getsockname()
unbound = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
try:
    unbound.listen()
except OSError as exc:
    report["listen_unbound"] = errno.errorcode[exc.errno]
try:
    unbound.getpeername()
except OSError as exc:
    report["peer_unconnected"] = errno.errorcode[exc.errno]
print(json.dumps(report))
"""


def test_bind_rules(library: Path, vsock_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(vsock_dir / "vsock-16-7000.sock"))
    stale.close()  # the path stays, nobody listens
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16))
    report = json.loads(python(BIND_RULES, env).stdout)
    assert report["stale"] == [VMADDR_CID_ANY, 7000]
    assert report["in_use"] == "EADDRINUSE"
    assert report["other_cid"] == "EADDRNOTAVAIL"
    cid, port = report["ephemeral"]
    assert cid == 16 and port >= 1024 and (vsock_dir / f"vsock-16-{port}.sock").is_socket()
    assert report["listen_unbound"] == "EINVAL"
    assert report["peer_unconnected"] == "ENOTCONN"


NO_MAPPING = """
import errno, json, os, socket
report = {}
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
except OSError as exc:
    report["vsock"] = errno.errorcode[exc.errno]
try:
    os.open("/dev/nsm", os.O_RDWR)
except OSError as exc:
    report["nsm"] = errno.errorcode[exc.errno]
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as inet:  # other families pass through
    inet.bind(("127.0.0.1", 0))
    report["inet"] = inet.getsockname()[0]
print(json.dumps(report))
"""


def test_without_a_mapping_nothing_reaches_the_kernels_vsock(library: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "LD_PRELOAD": str(library),
    }
    report = json.loads(python(NO_MAPPING, env).stdout)
    assert report == {"vsock": "EAFNOSUPPORT", "nsm": "ENOENT", "inet": "127.0.0.1"}


OTHER_ENTRY_POINTS = """
import ctypes, fcntl, json, os, struct, sys
import cbor2
from vault.enclave.nsm import NSM_IOCTL_RAW, response_from_raw
IOCTL_VM_SOCKETS_GET_LOCAL_CID = (7 << 8) | 0xB9  # _IO(7, 0xb9)
report = {}
fd = os.open("/dev/vsock", os.O_RDONLY)
report["local_cid"] = struct.unpack("I", fcntl.ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, b"\\0" * 4))[0]
os.close(fd)
# fopen and a C library's own open: the stdio path of a C program.
libc = ctypes.CDLL(None, use_errno=True)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.fileno.argtypes = [ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
stream = libc.fopen(b"/dev/nsm", b"r+e")
assert stream, ctypes.get_errno()
request = cbor2.dumps({"DescribePCR": {"index": 0}})
req = ctypes.create_string_buffer(request, len(request))
resp = ctypes.create_string_buffer(0x3000)
raw = bytearray(struct.pack("=QQQQ", ctypes.addressof(req), len(request), ctypes.addressof(resp), 0x3000))
fcntl.ioctl(libc.fileno(stream), NSM_IOCTL_RAW, raw, True)
report["fopen_pcr0"] = cbor2.loads(response_from_raw(bytes(raw), resp.raw))["DescribePCR"]["data"].hex()
libc.fclose(stream)
# A descriptor number reused behind the library's back is not taken for the device.
fd = os.open("/dev/nsm", os.O_RDWR)
os.closerange(fd, fd + 1)  # close_range(2) where the C library has it: past the library's close()
other = os.open("/dev/null", os.O_RDWR)
report["same_number"] = other == fd
try:
    fcntl.ioctl(other, NSM_IOCTL_RAW, raw, True)
    report["reused"] = "answered"
except OSError as exc:
    report["reused"] = exc.errno
print(json.dumps(report))
"""


THREADS = """
import json, socket, sys, threading
from vault.common.transport import AfVsockTransport
from vault.enclave.nsm import DeviceNsm
listener = AfVsockTransport().listen(6000)
listener.settimeout(30)
ROUNDS, WORKERS = 20, 8
def serve():
    for _ in range(ROUNDS * WORKERS):
        conn, peer = listener.accept()
        with conn:
            conn.sendall(repr(tuple(peer)).encode())
results, errors = [], []
def work(index):
    try:
        nsm = DeviceNsm()
        for _ in range(ROUNDS):
            with AfVsockTransport().connect(16, 6000, timeout=30) as sock:
                own = sock.getsockname()
                seen = sock.recv(64).decode()
                results.append(seen == repr(tuple(own)))
            results.append(nsm.describe_pcr(0).value.hex() == sys.argv[1])
    except Exception as exc:  # reported to the test
        errors.append(repr(exc))
server = threading.Thread(target=serve)
server.start()
workers = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join(60)
server.join(60)
print(json.dumps({"ok": sum(results), "total": len(results), "errors": errors}))
"""


def test_concurrent_threads(library: Path, nsm: NsmService, vsock_dir: Path) -> None:
    path = nsm.register_enclave("enc-threads", MEASUREMENTS, PCR3, pid=os.getpid())
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path))
    report = json.loads(python(THREADS, env, MEASUREMENTS.pcr0).stdout)
    assert report["errors"] == []
    assert report["ok"] == report["total"] == 2 * 20 * 8


def test_dev_vsock_fopen_and_reused_descriptors(library: Path, nsm: NsmService, vsock_dir: Path) -> None:
    path = nsm.register_enclave("enc-entry", MEASUREMENTS, PCR3, pid=os.getpid())
    env = child_env(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=21, nsm_socket=path))
    report = json.loads(python(OTHER_ENTRY_POINTS, env).stdout)
    assert report["local_cid"] == 21
    assert report["fopen_pcr0"] == MEASUREMENTS.pcr0
    assert report["same_number"] is True
    assert report["reused"] == errno.ENOTTY  # /dev/null's own answer to the NSM ioctl


# -- in the sandbox -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
def test_the_namespace_sandbox_injects_the_preload(
    library: Path, nsm_pcr0: Path, nsm: NsmService, vsock_dir: Path, short_dir: Path
) -> None:
    path = nsm.register_enclave("enc-sandbox", MEASUREMENTS, PCR3, bind_later=True)
    image = short_dir / "image"
    image.mkdir()
    before = sorted(p.name for p in image.iterdir())
    spec = SandboxSpec(
        name="preload-probe",
        image_dir=image,
        vsock_dir=vsock_dir,
        env=enclave_environment(image_dir=image, extra={}),
        log_path=short_dir / "probe.log",
        command=[str(nsm_pcr0)],
        shared_dirs=(path.parent,),
        preload=Preload(library, DeviceMapping(vsock_dir=vsock_dir, local_cid=16, nsm_socket=path)),
    )
    assert spec.process_env()["LD_PRELOAD"] == str(library)
    sandbox = NamespaceSandbox(spec)
    sandbox.start()
    try:
        deadline = time.monotonic() + 20
        while not sandbox.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        nsm.bind_peer("enc-sandbox", ProcessTree.of(sandbox.pids()[0]))
        while sandbox.running() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sandbox.stop()
    assert sandbox.returncode() == 0, spec.log_path.read_text()
    assert MEASUREMENTS.pcr0 in spec.log_path.read_text()
    # The library was never copied into what the image measures.
    assert sorted(p.name for p in image.iterdir()) == before


# -- the emulator's device mode -------------------------------------------------------------


def test_device_mode_is_the_namespace_runtimes_default_and_uds_an_option() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args(["up"])).enclave_devices is True
    assert config_from_args(parser.parse_args(["up", "--enclave-devices"])).enclave_devices is True
    assert config_from_args(parser.parse_args(["up", "--enclave-uds"])).enclave_devices is False
    # The container runtime keeps the Unix sockets unless device mode is asked for.
    container = ["up", "--enclave-runtime", "container"]
    assert config_from_args(parser.parse_args(container)).enclave_devices is False
    assert config_from_args(parser.parse_args([*container, "--enclave-devices"])).enclave_devices is True
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--enclave-devices", "--enclave-uds"])
    # Resolved once: what the daemon reads back is the mode up chose.
    config = EmulatorConfig(port=0)
    assert EmulatorConfig.from_json(config.to_json()).enclave_devices is True


def test_up_without_a_c_compiler_fails_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(NoCompiler, match=r"C compiler.*\[preload.no_compiler\].*--enclave-uds"):
        check_before_start(EmulatorConfig(port=0))
    check_before_start(EmulatorConfig(port=0, enclave_devices=False))


def test_device_mode_launches_the_production_configuration(
    cache_dir: Path, library: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The components build the library in the shared cache: here, this module's.
    monkeypatch.setenv("NITRO_VAULT_EMULATOR_CACHE_DIR", str(cache_dir))
    state_dir = Path(tempfile.mkdtemp(prefix="devices-", dir="/tmp"))
    config = EmulatorConfig(state_dir=state_dir, port=0, enclave_devices=True)
    config.layout.ensure()
    built = build_components(Context(config, config.layout))
    built.enclave.make_sandbox = lambda spec: StandInSandbox(spec, config.enclave_cid)
    try:
        for component in (built.image, built.pki, built.nsm, built.enclave):
            component.start()
        sandbox = built.enclave.sandbox
        assert sandbox is not None
        spec = sandbox.spec
        # The enclave is configured as in production: nothing names the emulator's sockets ...
        assert not {"VAULT_NSM", "VAULT_VSOCK_TRANSPORT", "VAULT_VSOCK_UDS_DIR"} & set(spec.env)
        # ... and the preload library leads /dev/nsm and AF_VSOCK to them.
        assert spec.preload is not None and spec.preload.library.parent.parent == cache_dir / "preload"
        env = spec.process_env()
        assert env["LD_PRELOAD"] == str(spec.preload.library)
        assert env[NSM_SOCKET_ENV] == str(built.enclave.context.facts["nsm_socket"])
        assert env[VSOCK_DIR_ENV] == str(config.layout.vsock_dir)
        assert env[VSOCK_CID_ENV] == str(config.enclave_cid)
        # The library is not in the image, so the measurement is the image's alone.
        assert measure_image(spec.image_dir).pcr0 == built.image.built.measurements.pcr0
        assert not list(spec.image_dir.rglob(LIBRARY_NAME))
        parent = built.parent.environment()
        assert "VAULT_VSOCK_TRANSPORT" not in parent and parent[VSOCK_CID_ENV] == str(PARENT_CID)
        assert parent["LD_PRELOAD"] == str(spec.preload.library) and NSM_SOCKET_ENV not in parent
    finally:
        built.enclave.stop()
        built.nsm.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
