"""Framing behaviour the mutation run (``nox -s mutation``) showed no other test pinned down:
exact error texts, the deadline reaching both the header and the body read, the receive chunk
size, and the exact bytes ``write_json`` puts on the wire."""

from __future__ import annotations

import json
import time

import pytest

from vault.common.framing import (
    FrameTooLarge,
    FramingError,
    encode_frame,
    encode_header,
    read_frame,
    read_json,
    write_frame,
    write_json,
)


class ScriptedSocket:
    """Serves ``data`` through ``recv_into`` and records every call the framing code makes."""

    def __init__(
        self, data: bytes = b"", *, recv_error: OSError | None = None, send_error: OSError | None = None
    ):
        self.data = data
        self.offset = 0
        self.recv_error = recv_error
        self.send_error = send_error
        self.requested: list[int] = []
        self.timeouts: list[float] = []
        self.sent: list[bytes] = []

    def settimeout(self, value: float) -> None:
        self.timeouts.append(value)

    def recv_into(self, view: memoryview, nbytes: int) -> int:
        self.requested.append(nbytes)
        if self.recv_error is not None:
            raise self.recv_error
        chunk = self.data[self.offset : self.offset + nbytes]
        view[: len(chunk)] = chunk
        self.offset += len(chunk)
        return len(chunk)

    def sendall(self, payload: bytes) -> None:
        if self.send_error is not None and self.sent:
            raise self.send_error
        self.sent.append(bytes(payload))


def test_negative_size_error_text():
    with pytest.raises(ValueError) as info:
        encode_header(-1)
    assert str(info.value) == "frame size cannot be negative"


def test_oversize_header_carries_the_size():
    with pytest.raises(FrameTooLarge) as info:
        encode_header(10485761)
    assert info.value.size == 10485761
    assert str(info.value) == "message size 10485761 exceeds maximum allowed size 10485760"


def test_deadline_reaching_now_times_out_before_any_recv(monkeypatch):
    # remaining == 0 is already too late: no recv may start with a zero budget.
    monkeypatch.setattr(time, "monotonic", lambda: 100.0)
    sock = ScriptedSocket(encode_frame(b"x"))
    with pytest.raises(FramingError) as info:
        read_frame(sock, deadline=100.0)
    assert str(info.value) == "failed to read message header: timed out"
    assert sock.requested == []


def test_deadline_bounds_header_and_body_reads():
    sock = ScriptedSocket(encode_frame(b"abc"))
    assert read_frame(sock, deadline=time.monotonic() + 30) == b"abc"
    # One settimeout per recv: the header's and the body's.
    assert len(sock.timeouts) == 2
    assert all(0 < t <= 30 for t in sock.timeouts)


def test_read_json_passes_its_deadline_on():
    sock = ScriptedSocket(encode_frame(b'{"a":1}'))
    assert read_json(sock, deadline=time.monotonic() + 30) == {"a": 1}
    assert len(sock.timeouts) == 2


def test_read_json_with_past_deadline_times_out():
    sock = ScriptedSocket(encode_frame(b'{"a":1}'))
    with pytest.raises(FramingError, match=r"^failed to read message header: timed out$"):
        read_json(sock, deadline=time.monotonic() - 1)


def test_body_is_received_in_chunks_of_at_most_one_mebibyte():
    size = 3 * (1 << 20) + 5
    sock = ScriptedSocket(encode_frame(b"z" * size))
    assert read_frame(sock) == b"z" * size
    assert sock.requested == [8, 1 << 20, 1 << 20, 1 << 20, 5]


def test_recv_error_text_names_the_part_and_the_cause():
    sock = ScriptedSocket(recv_error=ConnectionResetError("peer reset"))
    with pytest.raises(FramingError) as info:
        read_frame(sock)
    assert str(info.value) == "failed to read message header: peer reset"


def test_write_body_error_text():
    sock = ScriptedSocket(send_error=BrokenPipeError("pipe gone"))
    with pytest.raises(FramingError) as info:
        write_frame(sock, b"payload")
    assert str(info.value) == "failed to write message body: pipe gone"


def test_over_long_integer_error_names_the_type():
    sock = ScriptedSocket(encode_frame(b"9" * 5000))
    with pytest.raises(FramingError) as info:
        read_json(sock)
    assert str(info.value) == "failed to parse message: ValueError"


def test_write_json_bytes_are_compact_utf8():
    sock = ScriptedSocket()
    write_json(sock, {"name": "Zoë", "n": [1, 2]})
    body = b"".join(sock.sent)[8:]
    assert body == '{"name":"Zoë","n":[1,2]}'.encode()
    assert json.loads(body) == {"name": "Zoë", "n": [1, 2]}
