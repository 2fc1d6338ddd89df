"""How an emulated service in the daemon reaches its AWS backend.

The KMS front and the DynamoDB proxy send requests on to the backend unchanged. A
backend in another process (LocalStack, DynamoDB Local) is reached over HTTP; moto runs
in the daemon itself, so its WSGI application is called directly -- the same request,
headers and body, without a second HTTP parse, a loopback connection and a server
thread per request (measured: ~1.5 ms of the daemon's CPU per forwarded call).
"""

from __future__ import annotations

import http.client
import io
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Protocol
from urllib.parse import unquote_to_bytes, urlsplit
from wsgiref.types import WSGIApplication, WSGIEnvironment

#: Status, end-to-end headers and body of an answer.
Reply = tuple[int, list[tuple[str, str]], bytes]
WsgiApp = WSGIApplication

DEFAULT_TIMEOUT = 30.0
#: Headers that describe one connection, not the message; never passed on either way.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}
)
#: Headers a forwarding server writes itself.
_SERVER_WRITTEN = HOP_BY_HOP | {"server", "date"}
_log = logging.getLogger(__name__)


class Upstream(Protocol):
    """Where requests go; ``send`` raises ``OSError`` when the backend cannot be reached."""

    @property
    def url(self) -> str: ...

    def send(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply: ...


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without the ones a server or a connection writes for itself."""
    return [(k, v) for k, v in headers if k.lower() not in _SERVER_WRITTEN]


class HttpUpstream:
    """A backend at ``url`` (``http://127.0.0.1:<port>``); one connection per request."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._url = url.rstrip("/")
        parts = urlsplit(self._url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self.timeout = timeout

    @property
    def url(self) -> str:
        return self._url

    def send(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            connection.request(
                method, path, body=body, headers={k: v for k, v in headers if k.lower() not in HOP_BY_HOP}
            )
            response = connection.getresponse()
            data = response.read()
            return response.status, end_to_end(response.getheaders()), data
        finally:
            connection.close()


class WsgiUpstream:
    """A backend that is a WSGI application in this process (moto's dispatcher).

    The environ is what a WSGI server builds from the same request; an application that
    raises gets a 500, as from a server.
    """

    def __init__(self, app: WsgiApp, url: str) -> None:
        self._app = app
        self._url = url.rstrip("/")
        parts = urlsplit(self._url)
        self._server_name = parts.hostname or "127.0.0.1"
        self._server_port = str(parts.port or 80)

    @property
    def url(self) -> str:
        return self._url

    def environ(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> WSGIEnvironment:
        raw_path, _, query = path.partition("?")
        environ: WSGIEnvironment = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            # PEP 3333: the decoded path, as latin-1 text of its bytes.
            "PATH_INFO": unquote_to_bytes(raw_path or "/").decode("latin-1"),
            "QUERY_STRING": query,
            "REQUEST_URI": path,
            "RAW_URI": path,
            "SERVER_NAME": self._server_name,
            "SERVER_PORT": self._server_port,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "0",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers:
            lowered = name.lower()
            # Like WSGI servers: an underscore header could pass for a dashed one.
            if lowered in HOP_BY_HOP or "_" in name:
                continue
            if lowered == "content-type":
                environ["CONTENT_TYPE"] = value
                continue
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def send(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        # What the application answers; a 500 if it never calls start_response.
        status = 500
        answered: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        def start_response(
            status_line: str, response_headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            nonlocal status, answered
            status = int(status_line.split(" ", 1)[0])
            answered = response_headers
            return chunks.append

        try:
            result = self._app(self.environ(method, path, headers, body), start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception as exc:  # noqa: BLE001 - what a WSGI server does with an application error
            _log.error("the in-process backend failed: %s", type(exc).__name__, exc_info=True)
            return 500, [("Content-Type", "text/plain")], b"Internal Server Error"
        return status, end_to_end(answered), b"".join(chunks)


def upstream_for(backend: Upstream | str) -> Upstream:
    """An upstream from a URL (HTTP) or an upstream as is."""
    return HttpUpstream(backend) if isinstance(backend, str) else backend
