"""An HTTP server of the emulator on a loopback address, serving from a daemon thread.

The API gateway, the KMS front, the DynamoDB proxy and IMDS each serve HTTP/1.1 with the
standard library's threading server and a handler built on
:class:`~emulator.host.http_handler.LoopbackHandler`; this is their shared lifecycle: bind
(port 0: a free port), serve, stop, and the address they are reached at. Their request
handlers reach the service they belong to as ``self.owner``.

Each connection has a thread, so two limits keep a misbehaving client from holding threads:
an idle timeout (a connection that sends nothing for that long, half-way through a request or
between keep-alive requests, is closed) and a cap on open connections.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from emulator.host.http_handler import LoopbackHandler

_log = logging.getLogger(__name__)
#: How often serve_forever looks at its shutdown flag.
POLL_INTERVAL = 0.05
DEFAULT_IDLE_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 128


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client may hold of a server: how long a connection may idle, how many may be open."""

    #: Seconds a connection may go without sending anything the server waits for.
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    #: Open connections beyond this are answered 503 and closed.
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


DEFAULT_LIMITS = ConnectionLimits()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when a burst of clients connects at
    # once (16 concurrent clients), and the kernel then resets some of those connections.
    request_queue_size = 128
    RequestHandlerClass: type[LoopbackHandler]

    def __init__(
        self, address: tuple[str, int], handler: type[LoopbackHandler], *, name: str, max_connections: int
    ) -> None:
        self.name = name
        self.max_connections = max_connections
        self._turning_away = False
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return len(self._open)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            admitted = len(self._open) < self.max_connections
            if admitted:
                self._open.add(request)
                self._turning_away = False
        if not admitted:
            self._turn_away(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)

    def _turn_away(self, request: socket.socket, client_address: Any) -> None:
        # A connection over the cap is answered 503 (clients retry a 503) and closed, rather
        # than refused with a reset, which a client cannot tell from a crash. The answer is
        # sent from the accepting thread without blocking -- it fits an empty send buffer --
        # so the cap costs no thread; what the client has already sent is dropped first, or
        # closing with unread data would reset the connection before the 503 is read.
        with self._open_lock:
            first, self._turning_away = not self._turning_away, True
        # One warning when the cap is reached, not one per connection of a flood.
        _log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s: %d connections open; turning %s away",
            self.name,
            self.max_connections,
            client_address[0],
        )
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(self.RequestHandlerClass.overload_response())
            request.shutdown(socket.SHUT_WR)
            # Bounded: a client that keeps sending must not keep the accepting thread.
            for _ in range(16):
                if not request.recv(65536):
                    break
        self.shutdown_request(request)

    def close_open_connections(self) -> None:
        """End every open connection, so their threads stop waiting on clients."""
        with self._open_lock:
            open_now = list(self._open)
        for request in open_now:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early is routine; anything else is worth a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            _log.info("client %s went away: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """``handler`` served on ``host:port`` once :meth:`start` is called; stopping twice is harmless.

    Each server gets its own subclass of ``handler`` whose ``owner`` is ``owner`` and whose
    ``timeout`` is the idle timeout of ``limits``.
    """

    def __init__(
        self,
        handler: type[LoopbackHandler],
        owner: object,
        *,
        name: str,
        host: str,
        port: int,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.host = host
        self.limits = limits
        self._handler: type[LoopbackHandler] = type(
            handler.__name__, (handler,), {"owner": owner, "timeout": limits.idle_timeout}
        )
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server(
            (self.host, self._requested_port),
            self._handler,
            name=self.name,
            max_connections=self.limits.max_connections,
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            # A stopped server answers nothing more, on new connections or on kept-alive ones.
            server.close_open_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def open_connections(self) -> int:
        """Connections being served now (0 when stopped)."""
        return 0 if self._server is None else self._server.open_connections

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"
