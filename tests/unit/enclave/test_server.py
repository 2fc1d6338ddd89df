"""The enclave's vsock server over the Unix-socket transport (decision D12)."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.framing import (
    MAX_MESSAGE_SIZE,
    FrameTruncated,
    FramingError,
    encode_frame,
    read_frame,
    write_frame,
)
from vault.common.messages import EnclaveReply
from vault.common.transport import UnixSocketTransport
from vault.enclave.handler import RequestHandler
from vault.enclave.server import EnclaveServer, ServerConfig, encode_reply, is_probe

ENCLAVE_CID = 16
PORT = 5050


@pytest.fixture
def transport() -> Iterator[UnixSocketTransport]:
    # Unix socket paths are limited to 107 bytes: keep the directory short.
    with tempfile.TemporaryDirectory(prefix="vsock-") as path:
        yield UnixSocketTransport(Path(path), local_cid=ENCLAVE_CID)


@pytest.fixture
def make_server(transport, decryptor) -> Iterator[Callable[..., EnclaveServer]]:
    servers: list[EnclaveServer] = []

    def make(**overrides: Any) -> EnclaveServer:
        settings: dict[str, Any] = {
            "port": PORT,
            "read_timeout": 5.0,
            "accept_poll_interval": 0.05,
            "shutdown_timeout": 2.0,
        }
        settings.update(overrides)
        server = EnclaveServer(transport, RequestHandler(decryptor), ServerConfig(**settings))
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


def connect(transport: UnixSocketTransport) -> socket.socket:
    return transport.connect(ENCLAVE_CID, PORT, timeout=5)


def exchange(transport: UnixSocketTransport, payload: bytes) -> dict[str, Any]:
    with connect(transport) as sock:
        write_frame(sock, payload)
        return json.loads(read_frame(sock))


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def assert_closed(sock: socket.socket) -> None:
    with pytest.raises(FrameTruncated) as info:
        read_frame(sock)
    assert info.value.received == 0


def request_bytes(key: VaultKey, fields: dict[str, str]) -> bytes:
    return json.dumps(key.request(fields).to_wire()).encode()


def test_decrypts_over_the_socket(make_server, transport, vault_key):
    make_server()
    reply = exchange(transport, request_bytes(vault_key, {"name": vault_key.seal_field("name", "Ada")}))
    assert reply == {"fields": {"name": "Ada"}, "errors": []}


def test_context_manager_serves_and_stops(transport, decryptor, vault_key):
    config = ServerConfig(port=PORT, accept_poll_interval=0.05)
    with EnclaveServer(transport, RequestHandler(decryptor), config) as server:
        assert exchange(transport, request_bytes(vault_key, {}))["fields"] == {}
        assert server.address.startswith("vsock://16:5050")
    with pytest.raises(OSError):
        connect(transport)


def test_over_limit_connection_gets_a_framed_busy_reply(make_server, transport, vault_key):
    server = make_server(max_connections=2, busy_read_timeout=0.2)
    silent = [connect(transport), connect(transport)]
    try:
        wait_for(lambda: server.active_connections == 2)
        with connect(transport) as extra:
            assert json.loads(read_frame(extra)) == {"errors": ["enclave busy"], "code": "EnclaveBusy"}
            assert_closed(extra)
    finally:
        for sock in silent:
            sock.close()
    wait_for(lambda: server.active_connections == 0)
    assert exchange(transport, request_bytes(vault_key, {}))["errors"] == []


def test_busy_reply_reaches_a_client_that_writes_first(make_server, transport, vault_key):
    # The parent writes its whole request, then reads: the busy reply must still be
    # readable (no reset, no write error), every time.
    server = make_server(max_connections=1)
    payload = request_bytes(vault_key, {"n": vault_key.seal_field("n", "v")})
    with connect(transport):
        wait_for(lambda: server.active_connections == 1)
        for _ in range(20):
            assert exchange(transport, payload) == {"errors": ["enclave busy"], "code": "EnclaveBusy"}


def test_busy_replies_beyond_their_own_limit_are_immediate(make_server, transport):
    server = make_server(max_connections=1, max_busy_replies=1, busy_read_timeout=5)
    with connect(transport), connect(transport) as waiting:
        wait_for(lambda: server.active_connections == 1)
        # ``waiting`` holds the only busy-reply thread (it sends nothing for 5 s) ...
        time.sleep(0.1)
        started = time.monotonic()
        with connect(transport) as third:
            # ... so the next over-limit client is answered by the accept loop at once.
            assert json.loads(read_frame(third))["code"] == "EnclaveBusy"
        assert time.monotonic() - started < 1
        waiting.shutdown(socket.SHUT_WR)
        assert json.loads(read_frame(waiting))["code"] == "EnclaveBusy"


def test_silent_client_times_out_and_frees_its_slot(make_server, transport, vault_key):
    server = make_server(max_connections=1, read_timeout=0.3, busy_read_timeout=0.1)
    with connect(transport) as silent:
        wait_for(lambda: server.active_connections == 1)
        with connect(transport) as second:
            assert json.loads(read_frame(second))["code"] == "EnclaveBusy"
        started = time.monotonic()
        reply = json.loads(read_frame(silent))
        assert reply == {"errors": ["failed to read message header: timed out"], "code": "InvalidRequest"}
        assert time.monotonic() - started < 2
    wait_for(lambda: server.active_connections == 0)
    assert exchange(transport, request_bytes(vault_key, {}))["errors"] == []


def test_dripping_client_is_bounded_by_the_request_deadline(make_server, transport):
    server = make_server(max_connections=1, read_timeout=0.5)
    with connect(transport) as slow:
        slow.sendall(struct.pack("<Q", 100))
        started = time.monotonic()
        # One byte every 100 ms would keep a per-recv timeout alive forever.
        for _ in range(30):
            try:
                slow.sendall(b"x")
            except OSError:
                break
            if server.active_connections == 0:
                break
            time.sleep(0.1)
        wait_for(lambda: server.active_connections == 0)
        assert time.monotonic() - started < 2.5
        reply = json.loads(read_frame(slow))
        assert reply["errors"] == ["failed to read message body: timed out"]


def test_oversize_frame_is_rejected_from_the_header(make_server, transport):
    make_server()
    with connect(transport) as sock:
        sock.sendall(struct.pack("<Q", MAX_MESSAGE_SIZE + 1))
        reply = json.loads(read_frame(sock))
        assert reply == {
            "errors": ["message size 10485761 exceeds maximum allowed size 10485760"],
            "code": "InvalidRequest",
        }
        assert_closed(sock)


def test_one_request_per_connection(make_server, transport, vault_key):
    make_server()
    with connect(transport) as sock:
        sock.sendall(encode_frame(request_bytes(vault_key, {})) + encode_frame(request_bytes(vault_key, {})))
        assert json.loads(read_frame(sock)) == {"fields": {}, "errors": []}
        assert_closed(sock)


def test_malformed_json_gets_an_error_reply(make_server, transport):
    make_server()
    reply = exchange(transport, b"{not json")
    assert reply["code"] == "InvalidRequest"
    assert reply["errors"][0].startswith("failed to parse request")
    assert "fields" not in reply


def test_connect_and_close_without_a_request(make_server, transport, vault_key):
    server = make_server()
    for _ in range(5):
        connect(transport).close()
    wait_for(lambda: server.active_connections == 0)
    assert exchange(transport, request_bytes(vault_key, {}))["errors"] == []


def test_a_probe_is_logged_at_debug_level_only(make_server, transport, caplog):
    server = make_server()
    with caplog.at_level(logging.DEBUG, logger="vault.enclave.server"):
        for _ in range(3):
            connect(transport).close()
        wait_for(lambda: server.active_connections == 0)
        wait_for(lambda: len([r for r in caplog.records if "probe" in r.getMessage()]) == 3)
    records = [
        r for r in caplog.records if r.name == "vault.enclave.server" and "listening" not in r.getMessage()
    ]
    assert {r.levelno for r in records} == {logging.DEBUG}
    assert {r.getMessage() for r in records} == {"connection closed before a request (probe)"}


def test_a_truncated_request_is_still_reported(make_server, transport, caplog):
    make_server()
    with caplog.at_level(logging.INFO, logger="vault.enclave.server"):
        with connect(transport) as sock:
            sock.sendall(b"\x05\x00")
            sock.shutdown(socket.SHUT_WR)
            reply = json.loads(read_frame(sock))
    assert reply["code"] == "InvalidRequest"
    assert "after 2 of 8 bytes" in reply["errors"][0]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO][-1] == "request not received"


def test_is_probe_only_for_an_empty_header():
    assert is_probe(FrameTruncated("header", 0, 8))
    assert not is_probe(FrameTruncated("header", 3, 8))
    assert not is_probe(FrameTruncated("body", 0, 10))
    assert not is_probe(FramingError("failed to read message header: timed out"))


def test_concurrent_clients_are_all_served(make_server, transport, vault_key):
    make_server(max_connections=8)
    payload = request_bytes(vault_key, {"n": vault_key.seal_field("n", "v")})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: exchange(transport, payload), range(16)))
    served = [r for r in replies if r.get("code") != "EnclaveBusy"]
    assert served and all(r == {"fields": {"n": "v"}, "errors": []} for r in served)


def test_shutdown_is_bounded_with_a_silent_client_connected(transport, decryptor):
    config = ServerConfig(port=PORT, read_timeout=30, accept_poll_interval=0.05, shutdown_timeout=0.5)
    server = EnclaveServer(transport, RequestHandler(decryptor), config)
    server.start()
    with connect(transport):
        wait_for(lambda: server.active_connections == 1)
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 2


def test_serve_forever_in_the_calling_thread(transport, decryptor, vault_key):
    server = EnclaveServer(
        transport, RequestHandler(decryptor), ServerConfig(port=PORT, accept_poll_interval=0.05)
    )
    server.bind()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert exchange(transport, request_bytes(vault_key, {}))["errors"] == []
    finally:
        server.shutdown()
        thread.join(5)
    assert not thread.is_alive()


def test_unserializable_engine_output_becomes_an_internal_error(transport, decryptor, vault_key):
    class OddEngine:
        def validate(self, expressions):
            return None

        def evaluate(self, fields, expressions):
            return SimpleNamespace(values={"x": object()}, errors=[])

    config = ServerConfig(port=PORT, accept_poll_interval=0.05)
    with EnclaveServer(transport, RequestHandler(decryptor, OddEngine()), config):
        payload = json.dumps(vault_key.request({}, expressions={"x": "1"}).to_wire()).encode()
        assert exchange(transport, payload) == {"errors": ["internal error"], "code": "InternalError"}


def test_encode_reply_survives_lone_surrogates():
    body = encode_reply(EnclaveReply(fields={"a\ud800": None}, errors=["[a\ud800] x"]))
    assert json.loads(body) == {"fields": {"a\ud800": None}, "errors": ["[a\ud800] x"]}


def test_encode_reply_keeps_unicode_as_utf8():
    assert (
        encode_reply(EnclaveReply(fields={"a": "世界"}, errors=[]))
        == '{"fields":{"a":"世界"},"errors":[]}'.encode()
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_connections": 0},
        {"read_timeout": 0},
        {"write_timeout": -1},
        {"shutdown_timeout": -1},
        {"max_busy_replies": -1},
        {"busy_read_timeout": 0},
    ],
)
def test_config_rejects_nonsense(overrides):
    with pytest.raises(ValueError):
        ServerConfig(**overrides)


def test_local_decryptor_is_shared_across_connections(make_server, transport, decryptor):
    make_server()
    key = decryptor.create_vault_key("v_shared")
    for _ in range(3):
        exchange(transport, request_bytes(key, {}))
    assert decryptor.calls == 3
    assert isinstance(decryptor, LocalKeyDecryptor)
