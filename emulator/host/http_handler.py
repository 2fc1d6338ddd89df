"""The request handler base of the emulator's loopback HTTP services, and their one body reader.

The API gateway, the KMS front, the DynamoDB proxy and IMDS read request bodies here, framed
as RFC 9112 says and parsed strictly, because a lenient reader is how a request is smuggled
or a server is made to buffer without bound:

* ``Content-Length`` is decimal digits only (no sign, no ``0x``, no ``5_0``); a list of the
  same value repeated is one value (RFC 9110 §8.6), different values are refused. Spaces
  around the value are not part of it; one that survives header parsing comes from an
  obsolete line folding, which is refused (RFC 9112 §5.2).
* ``Transfer-Encoding`` must end in ``chunked``; chunk sizes are hex digits only, chunk
  extensions are parsed by their grammar and ignored, every chunk ends in CRLF, and the
  running total is checked against the limit before each chunk is read.
* Both ``Content-Length`` and ``Transfer-Encoding``: refused (a smuggling vector).

A refused request is answered (400, 411, 413 or 501, in the service's own error shape) before
any of its body is read, and its connection is then closed: what is left of the body would be
read as the next request otherwise.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import ClassVar, Protocol

Headers = list[tuple[str, str]]

#: The longest chunk-size line (size and extensions) or trailer line accepted, CRLF included.
MAX_LINE = 8192
#: The most trailer fields accepted after the last chunk (they are read and dropped).
MAX_TRAILERS = 64
#: A length with more significant digits than this exceeds every limit (and ``int`` stays cheap).
MAX_LENGTH_DIGITS = 18
#: After refusing a request, how long and how much of its unsent remainder is read and dropped, so
#: that closing the socket with unread data (which sends a reset) does not destroy the answer
#: before the client has read it.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
DEFAULT_MAX_BODY = 1 << 20

_DIGITS = re.compile(r"[0-9]+")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
#: chunk-size [ chunk-ext ] (RFC 9112 §7.1.1): ``*( BWS ";" BWS name [ BWS "=" BWS value ] )``.
_CHUNK_LINE = re.compile(
    rb"(?P<size>[0-9A-Fa-f]+)"
    rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*"
)
_FIELD_LINE = re.compile(_TOKEN + rb":[\t\x20-\x7e\x80-\xff]*")


class RequestError(Exception):
    """A request refused before its body is read; the connection closes after the answer.

    ``code`` is stable (tests and logs rely on it); ``message`` is for people.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class IncompleteBody(Exception):
    """The connection ended before the body its framing announced: nobody is left to answer."""


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...

    def readline(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Framing:
    """How a request's body is delimited: ``length`` bytes, chunked, or no body."""

    length: int | None = None
    chunked: bool = False


def _bad(code: str, message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, code, message)


def _too_large(limit: int) -> RequestError:
    return RequestError(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "BodyTooLarge", f"the request body exceeds {limit} bytes"
    )


def _list_items(values: list[str], name: str) -> list[str]:
    """The comma-separated items of every ``name`` field, spaces around them removed."""
    items: list[str] = []
    for value in values:
        if "\r" in value or "\n" in value:
            raise _bad(f"Invalid{name.replace('-', '')}", f"{name} is folded over lines")
        items.extend(item.strip(" \t") for item in value.split(","))
    return items


def content_length(values: list[str], limit: int) -> int | None:
    """The value of the ``Content-Length`` fields ``values``, or ``None`` when there are none."""
    if not values:
        return None
    lengths: set[str] = set()
    for item in _list_items(values, "Content-Length"):
        if not _DIGITS.fullmatch(item):
            raise _bad("InvalidContentLength", "Content-Length must be decimal digits")
        lengths.add(item.lstrip("0") or "0")
    if len(lengths) > 1:
        raise _bad("InvalidContentLength", "Content-Length has conflicting values")
    digits = lengths.pop()
    if len(digits) > MAX_LENGTH_DIGITS or int(digits) > limit:
        raise _too_large(limit)
    return int(digits)


def request_framing(headers: Message, *, limit: int, length_required: bool = False) -> Framing:
    """How the body of a request with ``headers`` is framed; raises :class:`RequestError`."""
    lengths = [str(v) for v in headers.get_all("Content-Length") or []]
    encodings = [str(v) for v in headers.get_all("Transfer-Encoding") or []]
    if lengths and encodings:
        raise _bad("ConflictingFraming", "a request must not carry both Content-Length and Transfer-Encoding")
    if encodings:
        codings = [item.lower() for item in _list_items(encodings, "Transfer-Encoding") if item]
        if not codings or codings[-1] != "chunked" or "chunked" in codings[:-1]:
            raise _bad("InvalidTransferEncoding", "Transfer-Encoding must end in chunked, once")
        if len(codings) > 1:
            raise RequestError(
                HTTPStatus.NOT_IMPLEMENTED,
                "UnsupportedTransferEncoding",
                "no transfer coding other than chunked is supported",
            )
        return Framing(chunked=True)
    length = content_length(lengths, limit)
    if length is None and length_required:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "LengthRequired", "Content-Length is required")
    return Framing(length=length)


def _line(rfile: Readable, what: str) -> bytes:
    """One CRLF-terminated line without its CRLF."""
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise _bad("InvalidChunkedEncoding", f"a {what} line is longer than {MAX_LINE} bytes")
    if not line.endswith(b"\n"):
        raise IncompleteBody(f"the connection ended inside a {what} line")
    if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
        raise _bad("InvalidChunkedEncoding", f"a {what} line must end in CRLF")
    return line[:-2]


def _exactly(rfile: Readable, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) < size:
        raise IncompleteBody(f"the connection ended {size - len(data)} bytes before the body's end")
    return data


def read_chunked(rfile: Readable, limit: int) -> bytes:
    """A chunked body (RFC 9112 §7.1), never buffering more than ``limit`` bytes of it."""
    chunks: list[bytes] = []
    total = 0
    while True:
        match = _CHUNK_LINE.fullmatch(_line(rfile, "chunk size"))
        if match is None:
            raise _bad("InvalidChunkedEncoding", "a chunk size must be hex digits, then extensions")
        digits = match["size"].lstrip(b"0")
        if len(digits) > MAX_LENGTH_DIGITS:
            raise _too_large(limit)
        size = int(digits or b"0", 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise _too_large(limit)
        chunks.append(_exactly(rfile, size))
        if _exactly(rfile, 2) != b"\r\n":
            raise _bad("InvalidChunkedEncoding", "chunk data must end in CRLF")
    # The trailer section: fields are read by their grammar and dropped, as RFC 9112 §7.1.2 allows.
    for _ in range(MAX_TRAILERS + 1):
        line = _line(rfile, "trailer")
        if not line:
            return b"".join(chunks)
        if _FIELD_LINE.fullmatch(line) is None:
            raise _bad("InvalidChunkedEncoding", "a trailer field is malformed")
    raise _bad("InvalidChunkedEncoding", f"more than {MAX_TRAILERS} trailer fields")


def read_body(rfile: Readable, headers: Message, *, limit: int, length_required: bool = False) -> bytes:
    """The body of a request, read as its framing says.

    Raises :class:`RequestError` (before reading any of the body, except a chunked one found
    malformed or too large part-way) or :class:`IncompleteBody`.
    """
    framing = request_framing(headers, limit=limit, length_required=length_required)
    if framing.chunked:
        return read_chunked(rfile, limit)
    return _exactly(rfile, framing.length) if framing.length else b""


def encode_response(status: int, headers: Headers, body: bytes) -> bytes:
    """A complete HTTP/1.1 response that closes its connection, for answers sent without a handler."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.extend((f"Content-Length: {len(body)}", "Connection: close", "", ""))
    return "\r\n".join(lines).encode("latin-1") + body


def linger(connection: socket.socket) -> None:
    """Half-close, then read and drop what the client still sends (bounded), so it reads our answer."""
    try:
        connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        drained = 0
        while drained < LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            connection.settimeout(remaining)
            data = connection.recv(65536)
            if not data:
                return
            drained += len(data)
    except OSError:
        # The client has gone (or was slow to): there is nothing more to protect.
        return


class LoopbackHandler(BaseHTTPRequestHandler):
    """The base of every loopback service's handler: HTTP/1.1 keep-alive and one body reader.

    A service sets :attr:`max_body` (or overrides :meth:`body_limit`), :attr:`length_required`,
    and :meth:`error_reply` for its error shape. The server sets ``owner`` (the service) and
    ``timeout`` (the idle timeout of a connection) on a subclass of its own.
    """

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, every keep-alive request
    # after the first waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    #: The largest request body accepted; a larger one is answered 413 before it is read.
    max_body: ClassVar[int] = DEFAULT_MAX_BODY
    #: A request with neither Content-Length nor chunked body: 411 (True) or no body (False).
    length_required: ClassVar[bool] = False

    def setup(self) -> None:
        super().setup()
        self._refused = False

    def body_limit(self) -> int:
        return self.max_body

    @classmethod
    def error_reply(cls, error: RequestError) -> tuple[Headers, bytes]:
        """Headers and body of the answer to a refused request (the service's error shape)."""
        return [("Content-Type", "text/plain; charset=utf-8")], f"{error.message}\n".encode()

    @classmethod
    def overload_response(cls) -> bytes:
        """The whole answer to a connection beyond the server's cap (503, then closed)."""
        error = RequestError(
            HTTPStatus.SERVICE_UNAVAILABLE, "TooManyConnections", "too many open connections; retry later"
        )
        headers, body = cls.error_reply(error)
        return encode_response(error.status, [*headers, ("Retry-After", "1")], body)

    def read_body(self) -> bytes | None:
        """The request's body; ``None`` once a refused request is answered or its client is gone.

        Either way the connection closes after this request.
        """
        try:
            return read_body(
                self.rfile, self.headers, limit=self.body_limit(), length_required=self.length_required
            )
        except RequestError as error:
            self.refuse(error)
        except IncompleteBody:
            self.close_connection = True
        return None

    def refuse(self, error: RequestError) -> None:
        """Answer ``error`` in the service's shape and close the connection afterwards."""
        self.close_connection = True
        self._refused = True
        # The stable code only: what a refused request carried is not logged.
        self.log_message("refused (%s): %d", error.code, error.status)
        headers, body = self.error_reply(error)
        self.send_response(error.status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_expect_100(self) -> bool:
        # A request that will be refused is not invited to send its body: the handler answers it.
        try:
            request_framing(self.headers, limit=self.body_limit(), length_required=self.length_required)
        except RequestError:
            return True
        return super().handle_expect_100()

    def finish(self) -> None:
        super().finish()
        if self._refused:
            linger(self.connection)
