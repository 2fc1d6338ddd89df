"""Test doubles for the parent's collaborators and helpers shared by its unit and property tests.

:class:`FakeEnclave` listens where an enclave would on the emulated (Unix-socket) vsock
transport and does one scripted thing per connection: answer properly, answer busy,
close early, send a truncated frame, stay silent, drip bytes, send garbage. Every
loop in it is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from vault.common.framing import read_json, write_frame, write_json
from vault.common.messages import BUSY_MESSAGE, Credential, EnclaveErrorCode
from vault.common.transport import ENCLAVE_PORT, PARENT_CID, UnixSocketTransport
from vault.parent.app import ParentServices, create_app
from vault.parent.config import EnclaveTimeouts, static_description
from vault.parent.enclave_client import EnclaveClient
from vault.parent.errors import CredentialsUnavailable
from vault.parent.registry import StaticRegistry

ENCLAVE_CID = 16
#: Distinctive values: tests search logs and errors for them.
SECRET_ACCESS_KEY = "fake-SECRET-access-key-never-logged"
SESSION_TOKEN = "fake-SESSION-token-never-logged"
ACCESS_KEY_ID = "ASIAFAKEKEYNEVERLOG1"
TEST_CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": ACCESS_KEY_ID, "SecretAccessKey": SECRET_ACCESS_KEY, "Token": SESSION_TOKEN}
)
FAST_TIMEOUTS = EnclaveTimeouts(connect=0.5, read=0.5)
#: How long a misbehaving enclave holds a connection before giving up on its own.
HOLD_SECONDS = 10.0


def decrypt_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "vault_id": "v_2f4Yw0ZsNqk9",
        "region": "us-east-1",
        "fields": {"ssn9": "c3NuOQ==", "first_name": "Zmlyc3Q=", "dob": "ZG9i"},
        "suite_id": "SFBLRQARAAIAAg==",
        "encrypted_private_key": "a2V5LWJsb2I=",
    }
    body.update(overrides)
    return body


@contextlib.contextmanager
def short_tempdir() -> Iterator[Path]:
    """A fresh directory with a short path: Unix socket paths are limited to ~107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pv-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- enclave behaviours: each gets the enclave and one accepted connection -------------------

Behaviour = Callable[["FakeEnclave", socket.socket], None]


def echo(enclave: FakeEnclave, conn: socket.socket) -> None:
    """Answer like a healthy enclave: every field back, value reversed, no errors."""
    message = enclave.receive(conn)
    fields = message["request"]["fields"]
    write_json(conn, {"fields": {k: v[::-1] for k, v in fields.items()}, "errors": []})


def busy(enclave: FakeEnclave, conn: socket.socket) -> None:
    write_json(conn, {"errors": [BUSY_MESSAGE], "code": EnclaveErrorCode.BUSY.value})


def busy_without_code(enclave: FakeEnclave, conn: socket.socket) -> None:
    write_json(conn, {"errors": [BUSY_MESSAGE]})


def global_failure(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    write_json(conn, {"errors": ["failed to call KMS: AccessDeniedException"], "code": "KeyDecryptFailed"})


def close_after_request(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)


def close_at_once(enclave: FakeEnclave, conn: socket.socket) -> None:
    return None


def truncated_header(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    conn.sendall(b"\x64\x00\x00\x00")


def truncated_body(enclave: FakeEnclave, conn: socket.socket) -> None:
    """Announce 100 bytes, send 10, close (spec 9's truncated-body case)."""
    enclave.receive(conn)
    conn.sendall((100).to_bytes(8, "little") + b'{"fields":')


def silent(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    enclave.stopping.wait(enclave.hold)


def silent_before_reading(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.stopping.wait(enclave.hold)


def drip(enclave: FakeEnclave, conn: socket.socket) -> None:
    """A valid header, then one byte of body every 50 ms: each recv is quick, the whole is not."""
    enclave.receive(conn)
    body = json.dumps({"fields": {"a": "x" * 400}, "errors": []}).encode()
    conn.sendall(len(body).to_bytes(8, "little"))
    for byte in body:
        if enclave.stopping.wait(0.05):
            return
        try:
            conn.sendall(bytes([byte]))
        except OSError:
            return


def not_json(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    write_frame(conn, b"\xffnot json")


def wrong_shape(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    write_json(conn, {"fields": "all of them", "errors": 3})


def nan_value(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    write_frame(conn, b'{"fields":{"age":NaN},"errors":[]}')


def oversized_header(enclave: FakeEnclave, conn: socket.socket) -> None:
    enclave.receive(conn)
    conn.sendall((10 * 1024 * 1024 + 1).to_bytes(8, "little"))


def slow_echo(delay: float) -> Behaviour:
    """Answer like :func:`echo` after ``delay`` seconds, counting requests in progress.

    A request counts from after its connection was accepted until just *before* its
    reply is sent, so a connection the parent opens after receiving a reply can never
    overlap it in the count.
    """

    def behaviour(enclave: FakeEnclave, conn: socket.socket) -> None:
        with enclave._lock:
            enclave.in_progress += 1
            enclave.max_in_progress = max(enclave.max_in_progress, enclave.in_progress)
        try:
            message = enclave.receive(conn)
            if enclave.stopping.wait(delay):
                return
        finally:
            with enclave._lock:
                enclave.in_progress -= 1
        fields = message["request"]["fields"]
        write_json(conn, {"fields": {k: v[::-1] for k, v in fields.items()}, "errors": []})

    return behaviour


def silent_until_closed(enclave: FakeEnclave, conn: socket.socket) -> None:
    """Never answer; record how long the parent kept the connection open after its request."""
    enclave.receive(conn)
    started = time.monotonic()
    conn.settimeout(enclave.hold)
    try:
        while conn.recv(4096):
            pass
    except OSError:
        return
    with enclave._lock:
        enclave.closed_after.append(time.monotonic() - started)


def replay(payload: bytes) -> Behaviour:
    """Read the request, send ``payload`` raw, close."""

    def behaviour(enclave: FakeEnclave, conn: socket.socket) -> None:
        enclave.receive(conn)
        conn.sendall(payload)

    return behaviour


class FakeEnclave:
    """An enclave at ``cid`` on the Unix-socket vsock transport in ``directory``."""

    def __init__(
        self,
        directory: Path,
        cid: int = ENCLAVE_CID,
        behaviour: Behaviour = echo,
        *,
        hold: float = HOLD_SECONDS,
    ) -> None:
        self.transport = UnixSocketTransport(directory, local_cid=cid)
        self.cid = cid
        self.behaviour = behaviour
        self.hold = hold
        self.stopping = threading.Event()
        self.messages: list[dict[str, Any]] = []
        self.connections = 0
        #: For :func:`slow_echo`: requests being worked on now, and the most at once.
        self.in_progress = 0
        self.max_in_progress = 0
        #: For :func:`silent_until_closed`: seconds until the parent closed each connection.
        self.closed_after: list[float] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    def receive(self, conn: socket.socket) -> dict[str, Any]:
        conn.settimeout(5)
        message = read_json(conn)
        with self._lock:
            self.messages.append(message)
        return message

    def start(self) -> FakeEnclave:
        self._listener = self.transport.listen(ENCLAVE_PORT)
        self._listener.settimeout(0.05)
        accept = threading.Thread(target=self._accept_loop, name=f"fake-enclave-{self.cid}", daemon=True)
        self._threads.append(accept)
        accept.start()
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(Exception):
            self.behaviour(self, conn)

    def stop(self) -> None:
        self.stopping.set()
        if self._listener is not None:
            self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FakeEnclave:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- credentials ---------------------------------------------------------------------------


class FixedCredentials:
    """Always the same credential; counts how often it was asked."""

    def __init__(self, credential: Credential = TEST_CREDENTIAL) -> None:
        self.credential = credential
        self.calls = 0

    async def get(self) -> Credential:
        self.calls += 1
        return self.credential


class FailingCredentials:
    def __init__(self) -> None:
        self.calls = 0

    async def get(self) -> Credential:
        self.calls += 1
        raise CredentialsUnavailable()


# -- assembling an application ---------------------------------------------------------------


def make_services(
    directory: Path,
    cids: tuple[int, ...] = (ENCLAVE_CID,),
    *,
    credentials: Any = None,
    timeouts: EnclaveTimeouts = FAST_TIMEOUTS,
    workers: int = 8,
) -> ParentServices:
    return ParentServices(
        registry=StaticRegistry([static_description(cid) for cid in cids]),
        credentials=credentials if credentials is not None else FixedCredentials(),
        enclaves=EnclaveClient(UnixSocketTransport(directory, PARENT_CID), timeouts, workers=workers),
    )


@asynccontextmanager
async def asgi_client(
    services: ParentServices,
    *,
    raise_app_exceptions: bool = True,
    **app_options: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the application in-process, lifespan included."""
    app = create_app(services, **app_options)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=transport, base_url="http://parent.test") as client:
            yield client


def assert_error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The service's error shape: integer ``code`` equal to the status, non-empty ``message``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    return body


# -- a nitro-cli stand-in --------------------------------------------------------------------

FAKE_NITRO_CLI = """\
#!{python}
# Stand-in for nitro-cli: state in {state}, one JSON line per invocation in {calls}.
import json, pathlib, sys, time
state_path = pathlib.Path({state!r})
with open({calls!r}, "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
state = json.loads(state_path.read_text())
time.sleep(state.get("sleep", 0))
if state.get("fail"):
    print(state["fail"], file=sys.stderr)
    sys.exit(state.get("exit", 1))
command = sys.argv[1]
if command == "describe-enclaves":
    print(state.get("raw") or json.dumps(state["enclaves"], indent=4))
elif command == "run-enclave":
    args = sys.argv[2:]
    eif = pathlib.Path(args[args.index("--eif-path") + 1])
    cid = 16 + len(state["enclaves"])
    enclave = {{"EnclaveName": eif.stem, "EnclaveID": "i-0abc-enc%04x" % cid, "ProcessID": 4000 + cid,
               "EnclaveCID": cid, "NumberOfCPUs": int(args[args.index("--cpu-count") + 1]),
               "CPUIDs": [1], "MemoryMiB": int(args[args.index("--memory") + 1]), "State": "RUNNING",
               "Flags": "NONE"}}
    state["enclaves"].append(enclave)
    state_path.write_text(json.dumps(state))
    print(json.dumps(enclave))
else:
    sys.exit(2)
"""


class FakeNitroCli:
    """Writes an executable ``nitro-cli`` stand-in into ``directory`` and inspects what it did."""

    def __init__(self, directory: Path, enclaves: list[dict[str, Any]] | None = None) -> None:
        self.path = directory / "nitro-cli"
        self.state_path = directory / "nitro-cli-state.json"
        self.calls_path = directory / "nitro-cli-calls.jsonl"
        self.set_state(enclaves=enclaves or [])
        self.path.write_text(
            FAKE_NITRO_CLI.format(
                python=sys.executable, state=str(self.state_path), calls=str(self.calls_path)
            )
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def set_state(self, **state: Any) -> None:
        self.state_path.write_text(json.dumps(state))

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())  # type: ignore[no-any-return]

    @property
    def calls(self) -> list[list[str]]:
        if not self.calls_path.exists():
            return []
        return [json.loads(line) for line in self.calls_path.read_text().splitlines()]


def described(cid: int, name: str = "enclave-vault", **extra: Any) -> dict[str, Any]:
    """A describe-enclaves entry as nitro-cli prints it."""
    entry = {
        "EnclaveName": name,
        "EnclaveID": f"i-05f6ed443f7f2d5a6-enc{cid:015x}",
        "ProcessID": 3000 + cid,
        "EnclaveCID": cid,
        "NumberOfCPUs": 1 if name.startswith("enclave-vault") else 2,
        "CPUIDs": [1] if name.startswith("enclave-vault") else [2, 3],
        "MemoryMiB": 512 if name.startswith("enclave-vault") else 256,
        "State": "RUNNING",
        "Flags": "NONE",
    }
    entry.update(extra)
    return entry
