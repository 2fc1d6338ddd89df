"""Byte relays: accept a stream connection, open another, copy bytes both ways.

Two places need exactly this: inside the enclave, a loopback TCP listener whose every
connection continues over vsock to the parent's vsock-proxy (so boto3 needs no special
transport), and on the parent side the vsock-proxy itself. A relay never looks at the
bytes: TLS, when used, runs end to end through it.

Every loop is bounded: the accept loop polls a stop flag, each connection pair ends on
EOF from both sides, on an error, or after ``idle_timeout`` seconds without traffic, and
at most ``max_connections`` pairs run at once (extra connections are closed at once).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from collections.abc import Callable

_log = logging.getLogger(__name__)
_CHUNK = 64 * 1024
_ACCEPT_POLL = 0.05


def pump(a: socket.socket, b: socket.socket, idle_timeout: float) -> None:
    """Copy bytes between ``a`` and ``b`` until both directions are closed or idle."""
    peers = {a: b, b: a}
    open_reads = {a, b}
    with selectors.DefaultSelector() as selector:
        for sock in open_reads:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # A relay passes bytes on as they come; Nagle would hold a request's second
                # write until the first is acknowledged (a delayed-ACK stall per request).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while open_reads:
            ready = selector.select(idle_timeout)
            if not ready:
                return
            for key, _ in ready:
                source = key.fileobj
                assert isinstance(source, socket.socket)
                try:
                    data = source.recv(_CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                target = peers[source]
                if not data:
                    # Half-close: pass the EOF on and keep the other direction flowing.
                    selector.unregister(source)
                    open_reads.discard(source)
                    with contextlib.suppress(OSError):
                        target.shutdown(socket.SHUT_WR)
                    continue
                try:
                    target.setblocking(True)
                    target.settimeout(idle_timeout)
                    target.sendall(data)
                    target.setblocking(False)
                except OSError:
                    return


class RelayServer:
    """Relay each connection accepted on ``listener`` to a socket from ``connect``."""

    def __init__(
        self,
        listener: socket.socket,
        connect: Callable[[], socket.socket],
        *,
        name: str,
        idle_timeout: float = 30.0,
        max_connections: int = 32,
    ) -> None:
        self._listener = listener
        self._connect = connect
        self.name = name
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._listener.settimeout(_ACCEPT_POLL)
        self._thread = threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            workers = list(self._workers)
            # Ending the sockets ends their pumps now rather than after the idle timeout.
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for worker in workers:
            worker.join(timeout=5)

    def __enter__(self) -> RelayServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            if not self._slots.acquire(blocking=False):
                _log.warning("relay busy, connection refused", extra={"fields": {"relay": self.name}})
                client.close()
                continue
            worker = threading.Thread(
                target=self._serve, args=(client,), name=f"{self.name}-conn", daemon=True
            )
            with self._lock:
                self._workers.add(worker)
            worker.start()

    def _serve(self, client: socket.socket) -> None:
        sockets = [client]
        with self._lock:
            self._open.add(client)
        try:
            try:
                upstream = self._connect()
            except OSError as exc:
                _log.warning(
                    "relay cannot reach its upstream",
                    extra={"fields": {"relay": self.name, "error": type(exc).__name__}},
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
                self._workers.discard(threading.current_thread())
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._slots.release()
