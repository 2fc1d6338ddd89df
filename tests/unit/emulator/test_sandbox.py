"""The namespace sandbox: no network but loopback, no host environment, signals reach the program."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from emulator.host import procfs
from emulator.nitro.sandbox import NamespaceSandbox, SandboxError, SandboxSpec, enclave_environment

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root"
)

PROBE = """
import errno, json, os, socket, sys
report = {"interfaces": [name for _, name in socket.if_nameindex()], "pid": os.getpid(),
          "hostname": socket.gethostname(), "env": sorted(os.environ)}
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    report["host_loopback"] = "connected"
except OSError as exc:
    report["host_loopback"] = errno.errorcode.get(exc.errno, str(exc))
# No IPv4 route at all: nothing can leave (checked without sending anything anywhere).
with open("/proc/net/route") as table:
    report["routes"] = [line.split()[0] for line in table.read().splitlines()[1:]]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
socket.create_connection(listener.getsockname(), timeout=2).close()
report["own_loopback"] = "ok"
unix = socket.socket(socket.AF_UNIX)
unix.connect(sys.argv[2])
unix.sendall(b"hello from the sandbox")
unix.close()
print(json.dumps(report))
"""


def run(tmp_path: Path, command: list[str], extra: dict[str, str] | None = None) -> NamespaceSandbox:
    spec = SandboxSpec(
        name="probe",
        image_dir=tmp_path,
        vsock_dir=tmp_path,
        env=enclave_environment(image_dir=tmp_path, extra=extra or {}),
        log_path=tmp_path / "probe.log",
        command=command,
    )
    sandbox = NamespaceSandbox(spec)
    sandbox.start()
    return sandbox


def wait_exit(sandbox: NamespaceSandbox, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sandbox.running() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_no_network_but_loopback_and_unix_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak")
    server = socket.create_server(("127.0.0.1", 0))
    unix_path = tmp_path / "vsock-3-8000.sock"
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(str(unix_path))
    unix_server.listen()
    unix_server.settimeout(20)
    try:
        port = server.getsockname()[1]
        sandbox = run(tmp_path, ["python3", "-c", PROBE, str(port), str(unix_path)])
        connection, _ = unix_server.accept()
        assert connection.recv(100) == b"hello from the sandbox"
        connection.close()
        wait_exit(sandbox)
        assert sandbox.returncode() == 0, (tmp_path / "probe.log").read_text()
        sandbox.stop()
    finally:
        server.close()
        unix_server.close()
    report = json.loads((tmp_path / "probe.log").read_text().strip().splitlines()[-1])
    assert report["interfaces"] == ["lo"]
    assert report["host_loopback"] == "ECONNREFUSED"  # the host's 127.0.0.1 is another namespace
    assert report["routes"] == []  # no route out of the sandbox at all
    assert report["own_loopback"] == "ok"  # lo is up for in-enclave bridges
    assert report["pid"] == 2  # PID namespace: the sandbox init is 1
    assert report["hostname"] == "enclave"
    assert not [
        name for name in report["env"] if name.startswith("AWS_") and name != "AWS_EC2_METADATA_DISABLED"
    ]
    assert "PYTHONPATH" in report["env"]


def test_stop_terminates_the_program_and_reaps_the_namespace(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    script = (
        "import signal, sys, time, subprocess\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(0)))\n"
        # an orphan-to-be inside the namespace; started after the handler, so once it runs, SIGTERM is caught
        "subprocess.Popen(['sleep', '300'])\n"
        "time.sleep(300)\n"
    )
    sandbox = run(tmp_path, ["python3", "-c", script])
    (pid,) = sandbox.pids()
    # Only this sandbox's own process tree is looked at: a sleep of another run is no concern here.
    namespace = _wait_for_sleep(pid)
    assert sandbox.running()
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 5
    assert marker.exists(), "SIGTERM was not forwarded to the program"
    assert not sandbox.running()
    assert not Path(f"/proc/{pid}").exists()
    # nothing from the namespace survives (the sleep would be reparented to the host's init)
    leftovers = [f"{p} {procfs.cmdline(p)}" for p, began in namespace.items() if _same_process(p, began)]
    assert leftovers == []


def _wait_for_sleep(root: int, timeout: float = 10.0) -> dict[int, int]:
    """The sandbox's processes (pid -> start time) once its ``sleep 300`` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        below = procfs.tree([root])
        if any(procfs.cmdline(p) == ["sleep", "300"] for p in below):
            return {p: began for p in below if (began := procfs.start_time(p)) is not None}
        time.sleep(0.05)
    raise AssertionError(f"no sleep 300 below the sandbox's pid {root} after {timeout:g} s")


def _same_process(pid: int, began: int) -> bool:
    # A pid the kernel reused for another process since is not a leftover.
    return procfs.alive(pid) and procfs.start_time(pid) == began


def test_image_directory_comes_first_on_the_python_path(tmp_path: Path) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "vault" / "__init__.py").write_text("WHERE = 'image'\n")
    sandbox = run(tmp_path, ["python3", "-c", "import vault; print(vault.WHERE, vault.__file__)"])
    wait_exit(sandbox)
    sandbox.stop()
    output = (tmp_path / "probe.log").read_text()
    assert f"image {tmp_path}/vault/__init__.py" in output


@pytest.mark.parametrize(
    "name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
)
def test_credentials_are_refused_in_the_enclave_environment(tmp_path: Path, name: str) -> None:
    with pytest.raises(SandboxError):
        enclave_environment(image_dir=tmp_path, extra={name: "x"})


def test_code_missing_from_the_image_is_not_found_in_the_source_tree(tmp_path: Path) -> None:
    from emulator.nitro.image import assemble_image
    from emulator.nitro.sandbox import interpreter_site_packages

    image = assemble_image(tmp_path / "image")
    probe = (
        "import importlib.util as u, vault, vault.enclave, cbor2\n"
        "print('origin', vault.__file__)\n"
        "print('api', u.find_spec('vault.api'))\n"
    )
    spec = SandboxSpec(
        name="probe",
        image_dir=image.directory,
        vsock_dir=tmp_path,
        env=enclave_environment(image_dir=image.directory, extra={}, python_path=interpreter_site_packages()),
        log_path=tmp_path / "probe.log",
        command=["python3", "-c", probe],
    )
    sandbox = NamespaceSandbox(spec)
    sandbox.start()
    wait_exit(sandbox)
    sandbox.stop()
    output = (tmp_path / "probe.log").read_text()
    assert sandbox.returncode() == 0, output
    assert f"origin {image.directory}/vault/__init__.py" in output  # the measured copy runs
    assert "api None" in output  # vault.api exists in the source tree, not in the image
