"""The vsock-proxy's worker limit (nitro-cli's ``--num_workers``) as opt-in realism, and its switches."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.daemon.config import DEFAULT_VSOCK_PROXY_WORKERS, EmulatorConfig
from emulator.nitro.vsock_proxy import NITRO_CLI_NUM_WORKERS, VsockProxy, VsockProxyError, WorkerPoolRelay
from emulator.tools.cli import build_parser, config_from_args, main
from vault.common.transport import DEFAULT_ENCLAVE_CID, KMS_PROXY_PORT, PARENT_CID, UnixSocketTransport

_WAIT = 5.0


class EchoServer:
    """A loopback TCP server that echoes each connection's bytes and counts connections."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(_WAIT)
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=_WAIT)
        for thread in self._threads:
            thread.join(timeout=_WAIT)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def vsock_dir() -> Iterator[Path]:
    # Unix socket paths must fit in sun_path (108 bytes); pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="vp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def enclave_connection(vsock_dir: Path) -> socket.socket:
    """A connection from the enclave (its CID) to the parent's proxy port, as the enclave makes it."""
    return UnixSocketTransport(vsock_dir, DEFAULT_ENCLAVE_CID).connect(PARENT_CID, KMS_PROXY_PORT, _WAIT)


def round_trip(sock: socket.socket, data: bytes, timeout: float = _WAIT) -> bytes:
    sock.settimeout(timeout)
    sock.sendall(data)
    return sock.recv(4096)


def wait_until(condition: object, timeout: float = _WAIT) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def test_default_relays_a_burst_well_beyond_nitro_clis_workers(echo: EchoServer, vsock_dir: Path) -> None:
    burst = 3 * NITRO_CLI_NUM_WORKERS
    with VsockProxy.over_uds(vsock_dir, ("127.0.0.1", echo.port)) as proxy:
        assert proxy.num_workers is None
        clients = [enclave_connection(vsock_dir) for _ in range(burst)]
        try:
            # All held open at once, each answered at once.
            for n, client in enumerate(clients):
                assert round_trip(client, f"c{n}".encode()) == f"c{n}".encode()
        finally:
            for client in clients:
                client.close()
    assert echo.accepted == burst


def test_a_connection_beyond_the_workers_is_accepted_and_waits_for_a_free_one(
    echo: EchoServer, vsock_dir: Path
) -> None:
    workers = 2
    with VsockProxy.over_uds(vsock_dir, ("127.0.0.1", echo.port), num_workers=workers) as proxy:
        first = [enclave_connection(vsock_dir) for _ in range(workers)]
        extra: socket.socket | None = None
        try:
            for n, client in enumerate(first):
                assert round_trip(client, f"w{n}".encode()) == f"w{n}".encode()
            # The connect succeeds (nitro-cli accepts every connection) ...
            extra = enclave_connection(vsock_dir)
            # ... but nothing is relayed, nor connected onward, while both workers are busy.
            with pytest.raises(TimeoutError):
                round_trip(extra, b"queued", timeout=0.3)
            assert echo.accepted == workers
            server = proxy_pool(proxy)
            assert (server.busy, server.queued) == (workers, 1)
            # A worker comes free when its connection ends; the waiting one is served then.
            first[0].close()
            extra.settimeout(_WAIT)
            assert extra.recv(4096) == b"queued"
            assert wait_until(lambda: echo.accepted == workers + 1)
            assert round_trip(extra, b"again") == b"again"
            assert round_trip(first[1], b"still") == b"still"
        finally:
            for client in [*first, *([extra] if extra is not None else [])]:
                client.close()


def proxy_pool(proxy: VsockProxy) -> WorkerPoolRelay:
    pool = proxy.server
    assert isinstance(pool, WorkerPoolRelay)
    return pool


def test_workers_must_not_be_zero(echo: EchoServer, vsock_dir: Path) -> None:
    with pytest.raises(VsockProxyError, match="must not be 0"):
        VsockProxy.over_uds(vsock_dir, ("127.0.0.1", echo.port), num_workers=0)


def test_an_unreachable_destination_drops_the_connection_and_frees_the_worker(vsock_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = int(closed.getsockname()[1])
    with VsockProxy.over_uds(vsock_dir, ("127.0.0.1", port), num_workers=1) as proxy:
        for _ in range(3):  # one worker, so each drop must have freed it
            client = enclave_connection(vsock_dir)
            with client:
                client.settimeout(_WAIT)
                # The proxy closes it without a byte (reading nothing it was sent).
                assert client.recv(16) == b""
        assert wait_until(lambda: proxy_pool(proxy).busy == 0)


# -- the switches ----------------------------------------------------------------------------


def test_production_limits_are_off_by_default() -> None:
    config = config_from_args(build_parser().parse_args(["up"]))
    assert config.production_limits is False
    assert config.vsock_proxy_workers == DEFAULT_VSOCK_PROXY_WORKERS == NITRO_CLI_NUM_WORKERS
    assert config.kms_quota_scale == 1.0


def test_the_flag_and_the_config_keys_turn_them_on() -> None:
    args = build_parser().parse_args(
        ["up", "--production-limits", "--vsock-proxy-workers", "8", "--kms-quota-scale", "0.01"]
    )
    config = config_from_args(args)
    assert (config.production_limits, config.vsock_proxy_workers, config.kms_quota_scale) == (True, 8, 0.01)
    again = EmulatorConfig.from_json(config.to_json())
    assert (again.production_limits, again.vsock_proxy_workers, again.kms_quota_scale) == (True, 8, 0.01)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--vsock-proxy-workers", "0"], "--vsock-proxy-workers must be at least 1"),
        (["--kms-quota-scale", "0"], "--kms-quota-scale must be positive"),
    ],
)
def test_bad_values_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--state-dir", str(tmp_path), "--production-limits", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    with pytest.raises(ValueError):
        EmulatorConfig(vsock_proxy_workers=0)
    with pytest.raises(ValueError):
        EmulatorConfig(kms_quota_scale=-1)
