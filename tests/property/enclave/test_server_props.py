"""The server answers any malformed request with a framed error, never a crash or a hang."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.enclave_keys import LocalKeyDecryptor
from vault.common.framing import encode_frame, read_frame, write_frame
from vault.common.messages import EnclaveReply
from vault.common.transport import UnixSocketTransport
from vault.enclave.handler import RequestHandler
from vault.enclave.server import EnclaveServer, ServerConfig

from .strategies import malformed_payloads

CID, PORT = 16, 5050
DECRYPTOR = LocalKeyDecryptor()
KEY = DECRYPTOR.create_vault_key("v_server_props")
VALID = KEY.request({"a": KEY.seal_field("a", "x")}).to_wire()
#: Client-side bound: a reply that takes longer than this is a hang.
CLIENT_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def transport():
    with tempfile.TemporaryDirectory(prefix="vsock-") as directory:
        transport = UnixSocketTransport(Path(directory), local_cid=CID)
        config = ServerConfig(port=PORT, read_timeout=1.0, accept_poll_interval=0.05, shutdown_timeout=2.0)
        with EnclaveServer(transport, RequestHandler(DECRYPTOR), config) as server:
            yield transport
            assert server.active_connections <= 1


def _read_to_end(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@given(payload=malformed_payloads(VALID))
def test_malformed_request_gets_a_framed_error(transport, payload):
    with transport.connect(CID, PORT, timeout=CLIENT_TIMEOUT) as sock:
        write_frame(sock, payload)
        reply = EnclaveReply.model_validate(json.loads(read_frame(sock)))
        assert _read_to_end(sock) == b""  # one request, one reply, then the server closes
    # A mutation can leave a valid request (e.g. one without fields); anything else is a
    # global failure with one message and a code.
    if reply.is_global_failure:
        assert reply.code is not None and len(reply.errors) == 1 and reply.errors[0]
    else:
        # A mutated field name is another field, and the name is the AEAD's associated data:
        # it never opens, so it answers null with an error of its own.
        renamed = {name: value for name, value in (reply.fields or {}).items() if name != "a"}
        assert all(value is None for value in renamed.values())
        assert len(reply.errors) >= len(renamed)


@given(raw=st.binary(min_size=1, max_size=64))
def test_unframed_bytes_get_an_error_or_a_close(transport, raw):
    # Arbitrary bytes, then end of input: a short header, a truncated body, an oversize
    # header or a complete tiny frame. The server must answer or close, promptly.
    with transport.connect(CID, PORT, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        rest = _read_to_end(sock)
    reply = EnclaveReply.model_validate(json.loads(rest[8:]))
    assert rest[:8] == encode_frame(rest[8:])[:8]
    assert reply.is_global_failure and reply.code is not None
