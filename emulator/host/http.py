"""An HTTP server of the emulator on a loopback address, serving from a daemon thread.

The API gateway, the KMS front, the DynamoDB proxy and IMDS each serve HTTP/1.1 with the
standard library's threading server; this is their shared lifecycle: bind (port 0: a
free port), serve, stop, and the address they are reached at. Their request handlers
reach the service they belong to as ``self.owner``.
"""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_log = logging.getLogger(__name__)
#: How often serve_forever looks at its shutdown flag.
POLL_INTERVAL = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 overflows when a burst of clients connects at
    # once (16 concurrent clients), and the kernel then resets some of those connections.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early is routine; anything else is worth a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            _log.info("client %s went away: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """``handler`` served on ``host:port`` once :meth:`start` is called; stopping twice is harmless.

    Each server gets its own subclass of ``handler`` whose ``owner`` is ``owner``.
    """

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], owner: object, *, name: str, host: str, port: int
    ) -> None:
        self.name = name
        self.host = host
        self._handler = type(handler.__name__, (handler,), {"owner": owner})
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self._requested_port), self._handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"
