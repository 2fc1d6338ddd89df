"""Frame layout, size limits and error texts of the vsock wire (upstream spec 4.1 and 9)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from vault.common.framing import (
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    FrameTooLarge,
    FrameTruncated,
    FramingError,
    decode_header,
    encode_frame,
    encode_header,
    read_frame,
    read_json,
    write_frame,
    write_json,
)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


def test_constants():
    assert MAX_MESSAGE_SIZE == 10485760
    assert HEADER_SIZE == 8


def test_header_is_little_endian_u64():
    assert encode_header(0x00010203) == bytes([3, 2, 1, 0, 0, 0, 0, 0])
    assert encode_header(0) == bytes(8)


def test_header_byte_order_of_spec_example():
    # 0x0102030405060708 travels as 08 07 06 05 04 03 02 01; it is far over the limit,
    # so decoding it must name exactly that size.
    with pytest.raises(FrameTooLarge) as info:
        decode_header(bytes([8, 7, 6, 5, 4, 3, 2, 1]))
    assert info.value.size == 0x0102030405060708
    assert str(info.value) == "message size 72623859790382856 exceeds maximum allowed size 10485760"


def test_max_size_is_accepted():
    assert decode_header(struct.pack("<Q", MAX_MESSAGE_SIZE)) == MAX_MESSAGE_SIZE
    assert encode_header(MAX_MESSAGE_SIZE) == struct.pack("<Q", MAX_MESSAGE_SIZE)


def test_max_plus_one_is_rejected_with_size_and_limit():
    with pytest.raises(FrameTooLarge) as info:
        decode_header(struct.pack("<Q", MAX_MESSAGE_SIZE + 1))
    text = str(info.value)
    assert "10485761" in text and "10485760" in text and "exceeds maximum" in text
    with pytest.raises(FrameTooLarge):
        encode_header(MAX_MESSAGE_SIZE + 1)


def test_largest_u64_is_rejected():
    with pytest.raises(FrameTooLarge, match=str(2**64 - 1)):
        decode_header(b"\xff" * 8)


def test_negative_size_cannot_be_encoded():
    with pytest.raises(ValueError):
        encode_header(-1)


def test_short_header_bytes():
    with pytest.raises(FramingError, match="failed to read message header"):
        decode_header(b"\x01\x02\x03\x04")


def test_encode_frame_prefixes_length():
    assert encode_frame(b"abc") == b"\x03" + bytes(7) + b"abc"


@pytest.mark.parametrize("payload", ["Hello, Enclave!", "", '{"a": [1, 2]}', "Hello, 世界! 🔐"])
def test_round_trip(pair, payload):
    a, b = pair
    write_frame(a, payload.encode("utf-8"))
    assert read_frame(b).decode("utf-8") == payload


def test_json_round_trip(pair):
    a, b = pair
    write_json(a, {"fields": {"x": "Ω"}, "errors": []})
    assert read_json(b) == {"fields": {"x": "Ω"}, "errors": []}


def test_truncated_header(pair):
    a, b = pair
    a.sendall(b"\x01\x02\x03\x04")
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(FrameTruncated, match="failed to read message header") as info:
        read_frame(b)
    assert (info.value.part, info.value.received, info.value.expected) == ("header", 4, 8)


@pytest.mark.parametrize(("announced", "sent"), [(100, 10), (50, 0)])
def test_truncated_body(pair, announced, sent):
    a, b = pair
    a.sendall(encode_header(announced) + b"x" * sent)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(FramingError, match="failed to read message body"):
        read_frame(b)


def test_oversize_frame_refused_before_body(pair):
    a, b = pair
    # No body follows: the refusal must come from the header alone.
    a.sendall(struct.pack("<Q", MAX_MESSAGE_SIZE + 1))
    with pytest.raises(FrameTooLarge):
        read_frame(b)


def test_max_size_frame_is_read_whole(pair):
    a, b = pair
    payload = bytes(range(256)) * (MAX_MESSAGE_SIZE // 256)
    assert len(payload) == MAX_MESSAGE_SIZE
    writer = threading.Thread(target=write_frame, args=(a, payload))
    writer.start()
    try:
        assert read_frame(b) == payload
    finally:
        writer.join(10)


def test_deadline_bounds_a_dripping_sender(pair):
    a, b = pair
    a.sendall(encode_header(10) + b"x")
    started = time.monotonic()
    with pytest.raises(FramingError, match="failed to read message body: timed out"):
        read_frame(b, deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 2


def test_socket_timeout_applies_without_deadline(pair):
    _, b = pair
    b.settimeout(0.1)
    with pytest.raises(FramingError, match="failed to read message header: timed out"):
        read_frame(b)


def test_read_json_rejects_invalid_utf8_without_quoting(pair):
    a, b = pair
    write_frame(a, b'{"a": "\xff"}')
    with pytest.raises(FramingError, match="failed to parse message: invalid UTF-8 at byte 7"):
        read_json(b)


def test_read_json_rejects_invalid_json(pair):
    a, b = pair
    write_frame(a, b"{not json")
    with pytest.raises(FramingError, match="failed to parse message"):
        read_json(b)


def test_write_to_closed_peer_names_the_part(pair):
    a, b = pair
    b.close()
    with pytest.raises(FramingError, match=r"failed to write message (header|body)"):
        for _ in range(50):
            write_frame(a, b"x" * 65536)


def test_empty_frame_sends_only_the_header(pair):
    a, b = pair
    write_frame(a, b"")
    write_frame(a, b"x")
    # Exactly a zero header, then the next frame: no stray bytes in between.
    assert read_frame(b) == b""
    assert read_frame(b) == b"x"
