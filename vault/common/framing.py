"""Length-prefixed framing used on every vsock connection.

A frame is an 8-byte little-endian unsigned length ``N`` followed by ``N`` bytes
(UTF-8 JSON in practice). ``N`` may be zero and may equal ``MAX_MESSAGE_SIZE``;
anything larger is refused before a single body byte is read or allocated.
Error texts match the upstream enclave so the two can be told apart in logs.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # 10485760, inclusive
HEADER_SIZE = 8
_HEADER = struct.Struct("<Q")


class FramingError(Exception):
    """A frame could not be read or written."""


class FrameTruncated(FramingError):
    """The peer closed the stream before a whole header or body arrived."""

    def __init__(self, part: str, received: int, expected: int) -> None:
        super().__init__(
            f"failed to read message {part}: unexpected end of file after {received} of {expected} bytes"
        )
        self.part = part
        self.received = received
        self.expected = expected


class FrameTooLarge(FramingError):
    def __init__(self, size: int) -> None:
        super().__init__(f"message size {size} exceeds maximum allowed size {MAX_MESSAGE_SIZE}")
        self.size = size


def encode_header(size: int) -> bytes:
    if size < 0:
        raise ValueError("frame size cannot be negative")
    if size > MAX_MESSAGE_SIZE:
        raise FrameTooLarge(size)
    return _HEADER.pack(size)


def decode_header(header: bytes) -> int:
    """Return the body length announced by ``header``; refuse oversize frames."""
    if len(header) != HEADER_SIZE:
        raise FramingError(f"failed to read message header: expected {HEADER_SIZE} bytes, got {len(header)}")
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE_SIZE:
        raise FrameTooLarge(size)
    return int(size)


def encode_frame(payload: bytes) -> bytes:
    return encode_header(len(payload)) + payload


def _recv_exact(sock: socket.socket, count: int, what: str, deadline: float | None) -> bytes:
    # The buffer is allocated only after the announced size passed the limit check.
    buf = bytearray(count)
    view = memoryview(buf)
    received = 0
    while received < count:
        if deadline is not None:
            # A per-recv timeout alone lets a client that drips one byte at a time
            # hold the connection forever; the deadline bounds the whole frame.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FramingError(f"failed to read message {what}: timed out")
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[received:], min(count - received, 1 << 20))
        except TimeoutError as exc:
            raise FramingError(f"failed to read message {what}: timed out") from exc
        except OSError as exc:
            raise FramingError(f"failed to read message {what}: {exc}") from exc
        if n == 0:
            raise FrameTruncated(what, received, count)
        received += n
    return bytes(buf)


def read_frame(sock: socket.socket, *, deadline: float | None = None) -> bytes:
    """Read one frame (read-exact semantics).

    Without ``deadline`` the socket's own timeout applies to each ``recv``; with a
    ``deadline`` (a :func:`time.monotonic` instant) the whole frame must arrive by then.
    """
    size = decode_header(_recv_exact(sock, HEADER_SIZE, "header", deadline))
    if size == 0:
        return b""
    return _recv_exact(sock, size, "body", deadline)


def write_frame(sock: socket.socket, payload: bytes) -> None:
    """Write one frame (write-all semantics)."""
    header = encode_header(len(payload))
    try:
        sock.sendall(header)
    except OSError as exc:
        raise FramingError(f"failed to write message header: {exc}") from exc
    if not payload:
        # A zero-length send is not a no-op: it fails if the peer has already answered
        # an empty request and closed.
        return
    try:
        sock.sendall(payload)
    except OSError as exc:
        raise FramingError(f"failed to write message body: {exc}") from exc


def read_json(sock: socket.socket, *, deadline: float | None = None) -> Any:
    body = read_frame(sock, deadline=deadline)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The codec's own message quotes the offending byte; the offset is enough.
        raise FramingError(f"failed to parse message: invalid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FramingError(f"failed to parse message: {exc}") from exc
    except (ValueError, RecursionError) as exc:
        # Over-long integers and over-deep nesting; the type is enough to say why.
        raise FramingError(f"failed to parse message: {type(exc).__name__}") from exc


def write_json(sock: socket.socket, message: Any) -> None:
    write_frame(sock, json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
