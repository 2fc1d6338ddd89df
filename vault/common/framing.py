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
from typing import Any

MAX_MESSAGE_SIZE = 10 * 1024 * 1024  # 10485760, inclusive
HEADER_SIZE = 8
_HEADER = struct.Struct("<Q")


class FramingError(Exception):
    """A frame could not be read or written."""


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


def _recv_exact(sock: socket.socket, count: int, what: str) -> bytes:
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        try:
            chunk = sock.recv(min(remaining, 1 << 20))
        except TimeoutError as exc:
            raise FramingError(f"failed to read message {what}: timed out") from exc
        except OSError as exc:
            raise FramingError(f"failed to read message {what}: {exc}") from exc
        if not chunk:
            raise FramingError(
                f"failed to read message {what}: unexpected end of file "
                f"after {count - remaining} of {count} bytes"
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> bytes:
    """Read one frame (read-exact semantics); the socket's timeout applies per recv."""
    size = decode_header(_recv_exact(sock, HEADER_SIZE, "header"))
    if size == 0:
        return b""
    return _recv_exact(sock, size, "body")


def write_frame(sock: socket.socket, payload: bytes) -> None:
    """Write one frame (write-all semantics)."""
    header = encode_header(len(payload))
    try:
        sock.sendall(header)
    except OSError as exc:
        raise FramingError(f"failed to write message header: {exc}") from exc
    try:
        sock.sendall(payload)
    except OSError as exc:
        raise FramingError(f"failed to write message body: {exc}") from exc


def read_json(sock: socket.socket) -> Any:
    body = read_frame(sock)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FramingError(f"failed to parse message: {exc}") from exc


def write_json(sock: socket.socket, message: Any) -> None:
    write_frame(sock, json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
