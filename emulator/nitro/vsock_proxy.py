"""The parent's vsock-proxy: vsock (CID 3, port 8000) → one allowed TCP destination.

Like ``vsock-proxy <port> <host> <port> --config vsock-proxy.yaml`` on a Nitro
parent, the proxy forwards raw bytes of every vsock connection to a single destination
and refuses to run for a destination that its allow-list does not name. In the
emulator the vsock side is the Unix-socket transport (``vsock-3-8000.sock``) and the
destination is the KMS attestation front.

Connections at once: by default the emulator relays up to ``max_connections`` pairs and
closes any beyond them. With ``num_workers`` (production's limit, opt-in) it behaves as
nitro-cli's ``vsock-proxy --num_workers N`` (default 4, and the parent's
``nitro-enclaves-vsock-proxy.service`` passes none): the proxy accepts every connection
at once and hands it to a pool of N worker threads (the ``threadpool`` crate); a worker
connects to the destination and relays until either side closes. A connection beyond
the N busy workers is therefore accepted but waits, unread and not yet connected onward,
until a worker is free -- it is neither refused nor failed. (Bounding the wait queue at
``max_pending`` is the emulator's own safeguard; the real queue is unbounded.)
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from vault.common.transport import KMS_PROXY_PORT, PARENT_CID, UnixSocketTransport, VsockTransport
from vault.enclave.relay import RelayServer, pump

Destination = tuple[str, int]

#: nitro-cli's ``vsock-proxy`` default for ``-w, --num_workers``.
NITRO_CLI_NUM_WORKERS = 4
_log = logging.getLogger(__name__)
_POLL = 0.05


class VsockProxyError(ValueError):
    """The destination is not on the allow-list."""


class VsockProxy:
    def __init__(
        self,
        transport: VsockTransport,
        destination: Destination,
        *,
        allowlist: Iterable[Destination] | None = None,
        listen_port: int = KMS_PROXY_PORT,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_connections: int = 32,
        num_workers: int | None = None,
        max_pending: int = 1024,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            # nitro-cli: "Number of workers must not be 0".
            raise VsockProxyError("the number of vsock-proxy workers must not be 0")
        allowed = {(host.lower(), int(port)) for host, port in (allowlist or [destination])}
        host, port = destination
        if (host.lower(), int(port)) not in allowed:
            raise VsockProxyError(f"{host}:{port} is not on the vsock-proxy allow-list")
        self.destination: Destination = (host, int(port))
        self._transport = transport
        self.listen_port = listen_port
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self.num_workers = num_workers
        self._max_pending = max_pending
        self._server: RelayServer | WorkerPoolRelay | None = None

    @classmethod
    def over_uds(
        cls,
        vsock_dir: Path,
        destination: Destination,
        *,
        allowlist: Iterable[Destination] | None = None,
        listen_port: int = KMS_PROXY_PORT,
        num_workers: int | None = None,
    ) -> VsockProxy:
        """A proxy on the emulated vsock in ``vsock_dir``, listening as the parent (CID 3)."""
        transport = UnixSocketTransport(vsock_dir, PARENT_CID)
        return cls(
            transport, destination, allowlist=allowlist, listen_port=listen_port, num_workers=num_workers
        )

    def _connect(self) -> socket.socket:
        return socket.create_connection(self.destination, timeout=self._connect_timeout)

    def start(self) -> None:
        if self._server is not None:
            return
        listener = self._transport.listen(self.listen_port, backlog=self._max_connections)
        if self.num_workers is not None:
            pool = WorkerPoolRelay(
                listener,
                self._connect,
                workers=self.num_workers,
                idle_timeout=self._idle_timeout,
                max_pending=self._max_pending,
            )
            pool.start()
            self._server = pool
            return
        self._server = RelayServer(
            listener,
            self._connect,
            name="vsock-proxy",
            idle_timeout=self._idle_timeout,
            max_connections=self._max_connections,
        )
        self._server.start()

    @property
    def server(self) -> RelayServer | WorkerPoolRelay | None:
        """The running relay (a :class:`WorkerPoolRelay` with ``num_workers``); ``None`` when stopped."""
        return self._server

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> VsockProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerPoolRelay:
    """nitro-cli's vsock-proxy loop: accept every connection, relay each on one of N workers.

    ``queued`` and ``busy`` say how many connections wait for a worker and how many are
    being relayed (a load test reads them to see the proxy saturate).
    """

    def __init__(
        self,
        listener: socket.socket,
        connect: Callable[[], socket.socket],
        *,
        workers: int,
        idle_timeout: float,
        max_pending: int,
    ) -> None:
        self._listener = listener
        self._connect = connect
        self.workers = workers
        self.idle_timeout = idle_timeout
        self._pending: queue.Queue[socket.socket] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def queued(self) -> int:
        return self._pending.qsize()

    @property
    def busy(self) -> int:
        with self._lock:
            return self._busy

    def start(self) -> None:
        self._listener.settimeout(_POLL)
        self._threads = [threading.Thread(target=self._accept_loop, name="vsock-proxy-accept", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, name=f"vsock-proxy-worker-{n}", daemon=True)
            for n in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            # Ending the sockets ends their pumps now rather than after the idle timeout.
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        while True:
            try:
                waiting = self._pending.get_nowait()
            except queue.Empty:
                break
            waiting.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            try:
                self._pending.put_nowait(client)
            except queue.Full:
                _log.warning("vsock-proxy queue full, connection closed", extra={"fields": {}})
                client.close()

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._pending.get(timeout=_POLL)
            except queue.Empty:
                continue
            with self._lock:
                self._busy += 1
            try:
                self._serve(client)
            finally:
                with self._lock:
                    self._busy -= 1

    def _serve(self, client: socket.socket) -> None:
        sockets = [client]
        with self._lock:
            self._open.add(client)
        try:
            try:
                upstream = self._connect()
            except OSError as exc:
                # nitro-cli's worker panics here ("Could not create connection"): the client is dropped.
                _log.warning(
                    "vsock-proxy cannot reach its destination",
                    extra={"fields": {"error": type(exc).__name__}},
                )
                return
            sockets.append(upstream)
            with self._lock:
                self._open.add(upstream)
            if not self._stop.is_set():
                pump(client, upstream, self.idle_timeout)
        finally:
            with self._lock:
                self._open.difference_update(sockets)
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()
