"""Properties of the vsock framing: round trips and size bounds."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    write_frame,
)


@pytest.fixture(scope="module")
def pair():
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)
    yield a, b
    a.close()
    b.close()


@given(payload=st.binary(max_size=20_000))
def test_binary_round_trip(pair, payload):
    a, b = pair
    write_frame(a, payload)
    assert read_frame(b) == payload


@given(text=st.text(alphabet=st.characters(max_codepoint=127), max_size=10_000))
def test_ascii_round_trip(pair, text):
    a, b = pair
    write_frame(a, text.encode("ascii"))
    assert read_frame(b).decode("ascii") == text


@given(size=st.integers(min_value=0, max_value=2**64 - 1))
def test_any_u64_header_is_accepted_iff_within_limit(size):
    header = struct.pack("<Q", size)
    if size <= MAX_MESSAGE_SIZE:
        assert decode_header(header) == size
        assert encode_header(size) == header
    else:
        with pytest.raises(FrameTooLarge) as info:
            decode_header(header)
        assert str(size) in str(info.value) and "10485760" in str(info.value)


@given(size=st.integers(min_value=MAX_MESSAGE_SIZE + 1, max_value=MAX_MESSAGE_SIZE + 1_000_000))
def test_just_over_the_limit_is_refused(size):
    with pytest.raises(FrameTooLarge, match="exceeds maximum"):
        encode_header(size)


@given(header=st.binary(max_size=16))
def test_arbitrary_header_bytes_fail_only_as_framing_errors(header):
    try:
        size = decode_header(header)
    except FramingError:
        return
    assert len(header) == HEADER_SIZE and 0 <= size <= MAX_MESSAGE_SIZE


@given(payload=st.binary(max_size=300), data=st.data())
def test_truncated_stream_names_the_missing_part(payload, data):
    frame = encode_frame(payload)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(5)
        a.sendall(frame[:cut])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(FrameTruncated) as info:
            read_frame(b)
    expected = "header" if cut < HEADER_SIZE else "body"
    assert info.value.part == expected
    assert str(info.value).startswith(f"failed to read message {expected}")
