"""The loopback HTTP handler base: strict body framing, the idle timeout, the connection cap.

Malformed requests go over raw sockets to the gateway, the KMS front, the DynamoDB proxy and
IMDS; each must be answered in the service's error shape before any body is read, and its
connection then closed. Every socket has a timeout, so no test can hang.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy
from emulator.aws.gateway.server import ApiGateway, GatewayConfig
from emulator.aws.imds import TOKEN_PATH, TTL_HEADER, ImdsServer
from emulator.aws.kms.front import KmsFront
from emulator.host.http import ConnectionLimits, LoopbackServer
from emulator.host.http_handler import (
    MAX_LINE,
    IncompleteBody,
    LoopbackHandler,
    RequestError,
    read_body,
)

#: Every socket operation of these tests gives up after this long.
SOCKET_TIMEOUT = 5.0
GATEWAY_LIMIT = 64
#: Far above every service's body limit.
HUGE = 10**12


# -- raw HTTP over loopback -------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_reply(sock: socket.socket) -> Reply:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed the connection without an answer: {buffer!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Reply(int(status_line.split()[1]), headers, rest[:length])


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has ended the connection (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)


def exchange(port: int, data: bytes) -> tuple[Reply, bool]:
    """Send ``data``; the answer, and whether the server said it would close and did."""
    with connect(port) as sock:
        sock.sendall(data)
        reply = read_reply(sock)
        return reply, reply.headers.get("connection") == "close" and closed_by_server(sock)


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- the services ------------------------------------------------------------------------


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A Lambda handler that answers with the body it was given."""
    body = event["body"] or ""
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def self_signed_root() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    #: Request line and headers up to (not including) the framing headers and the blank line.
    head: bytes
    #: The stable error code of a 400 answer, read from the service's error shape.
    error_code: Callable[[Reply], str]


def _gateway_code(reply: Reply) -> str:
    assert reply.headers["content-type"] == "application/json" and "message" in reply.json()
    return reply.headers["x-amzn-errortype"]


def _kms_code(reply: Reply) -> str:
    assert "message" in reply.json()
    return str(reply.json()["__type"])


def _dynamodb_code(reply: Reply) -> str:
    assert "message" in reply.json()
    return str(reply.json()["__type"]).rpartition("#")[2]


def _imds_code(reply: Reply) -> str:
    assert reply.headers["content-type"] == "text/plain"
    return reply.body.decode()


#: The stable code each service answers a malformed request with.
BAD_REQUEST = {
    "gateway": "BadRequestException",
    "kms": "SerializationException",
    "dynamodb": "SerializationException",
    "imds": "Bad Request",
}
SERVICES = tuple(BAD_REQUEST)


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> Iterator[Service]:
    backend = "http://127.0.0.1:9"  # never reached: every request here is refused first
    started: ApiGateway | KmsFront | DynamoDbFaultProxy | ImdsServer
    if request.param == "gateway":
        gateway = ApiGateway(GatewayConfig(max_payload_bytes=GATEWAY_LIMIT), echo)
        gateway.start()
        started, port = gateway, gateway.port
        head, code = b"POST /v1/echo HTTP/1.1\r\nHost: x\r\n", _gateway_code
    elif request.param == "kms":
        front = KmsFront(backend=backend, trusted_root=self_signed_root())
        front.start()
        started, port = front, front.port
        head, code = b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.ListKeys\r\n", _kms_code
    elif request.param == "dynamodb":
        proxy = DynamoDbFaultProxy(backend, region="us-east-1", credentials=("a", "b"))
        proxy.start()
        started, port = proxy, proxy.port
        target = b"X-Amz-Target: DynamoDB_20120810.ListTables\r\n"
        head, code = b"POST / HTTP/1.1\r\nHost: x\r\n" + target, _dynamodb_code
    else:
        imds = ImdsServer().start()
        started, port = imds, imds.port
        head, code = f"PUT {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n{TTL_HEADER}: 60\r\n".encode(), _imds_code
    try:
        yield Service(request.param, port, head, code)
    finally:
        started.stop()


# -- malformed framing: 400 (or 413, 501) before the body is read, then closed -------------

MALFORMED_LENGTHS = {
    "non-numeric": b"Content-Length: abc\r\n",
    "negative": b"Content-Length: -1\r\n",
    "plus sign": b"Content-Length: +5\r\n",
    # Spaces around a value are not part of it (RFC 9110 §5.5); one that survives header
    # parsing is an obsolete line folding, which RFC 9112 §5.2 says to refuse.
    "leading space (folded)": b"Content-Length:\r\n 5\r\n",
    "hex": b"Content-Length: 0x10\r\n",
    "underscore": b"Content-Length: 1_0\r\n",
    "empty": b"Content-Length: \r\n",
    "two conflicting fields": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "a conflicting list": b"Content-Length: 5, 6\r\n",
}


@pytest.mark.parametrize("header", MALFORMED_LENGTHS.values(), ids=MALFORMED_LENGTHS.keys())
def test_a_malformed_content_length_is_400_and_closes(service: Service, header: bytes) -> None:
    reply, closed = exchange(service.port, service.head + header + b"\r\nhello")
    assert reply.status == 400
    assert service.error_code(reply) == BAD_REQUEST[service.name]
    assert reply.headers["connection"] == "close" and closed


@pytest.mark.parametrize("length", [str(HUGE), "9" * 5000])
def test_a_content_length_over_the_limit_is_413_before_the_body_is_sent(
    service: Service, length: str
) -> None:
    # No body is sent at all: the answer cannot have waited for it.
    reply, closed = exchange(service.port, service.head + f"Content-Length: {length}\r\n\r\n".encode())
    assert reply.status == 413 and reply.headers["connection"] == "close" and closed


def test_a_repeated_equal_content_length_is_one_value(service: Service) -> None:
    # RFC 9110 §8.6 lets a recipient take "5, 5" as 5; the request is then framed as usual.
    body = b"{}"
    with connect(service.port) as sock:
        sock.sendall(service.head + b"Content-Length: 2, 2\r\nContent-Length: 2\r\n\r\n" + body)
        reply = read_reply(sock)
        # Not refused as malformed; the KMS front then refuses the unsigned request (400).
        assert reply.status not in (411, 413)
        assert reply.status != 400 or service.error_code(reply) != BAD_REQUEST[service.name]


MALFORMED_CHUNKS = {
    "negative size": b"-1\r\nhello\r\n0\r\n\r\n",
    "0x size": b"0x5\r\nhello\r\n0\r\n\r\n",
    "empty size": b"\r\nhello\r\n0\r\n\r\n",
    "signed size": b"+5\r\nhello\r\n0\r\n\r\n",
    "space before size": b" 5\r\nhello\r\n0\r\n\r\n",
    "space after size without extension": b"5 \r\nhello\r\n0\r\n\r\n",
    "bare LF after size": b"5\nhello\r\n0\r\n\r\n",
    "no CRLF after the data": b"5\r\nhelloXX0\r\n\r\n",
    "malformed extension": b"5;=x\r\nhello\r\n0\r\n\r\n",
    "unterminated quoted extension": b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "size line too long": b"5;" + b"a" * MAX_LINE + b"\r\nhello\r\n0\r\n\r\n",
    "malformed trailer": b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
}


@pytest.mark.parametrize("body", MALFORMED_CHUNKS.values(), ids=MALFORMED_CHUNKS.keys())
def test_a_malformed_chunked_body_is_400_and_closes(service: Service, body: bytes) -> None:
    reply, closed = exchange(service.port, service.head + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert reply.status == 400
    assert service.error_code(reply) == BAD_REQUEST[service.name]
    assert reply.headers["connection"] == "close" and closed


def test_a_chunk_over_the_limit_is_413_before_its_data_is_sent(service: Service) -> None:
    size = f"{HUGE:x}".encode()
    reply, closed = exchange(
        service.port, service.head + b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n"
    )
    assert reply.status == 413 and reply.headers["connection"] == "close" and closed


def test_both_content_length_and_chunked_is_400(service: Service) -> None:
    framing = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    reply, closed = exchange(service.port, service.head + framing)
    assert reply.status == 400 and service.error_code(reply) == BAD_REQUEST[service.name] and closed


@pytest.mark.parametrize(
    ("encoding", "status"), [(b"gzip", 400), (b"chunked, chunked", 400), (b"", 400), (b"gzip, chunked", 501)]
)
def test_transfer_codings_other_than_chunked_are_refused(
    service: Service, encoding: bytes, status: int
) -> None:
    reply, closed = exchange(
        service.port, service.head + b"Transfer-Encoding: " + encoding + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    assert reply.status == status and closed


def test_an_oversized_request_that_expects_100_continue_is_not_invited(service: Service) -> None:
    reply, closed = exchange(
        service.port, service.head + f"Content-Length: {HUGE}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    assert reply.status == 413 and closed


# -- good requests still work ------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[ApiGateway]:
    gateway = ApiGateway(GatewayConfig(max_payload_bytes=GATEWAY_LIMIT), echo)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


GATEWAY_HEAD = b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"


def test_a_good_request_with_content_length_is_served_and_kept_alive(gateway: ApiGateway) -> None:
    with connect(gateway.port) as sock:
        for body in (b"hello", b"", b"x" * GATEWAY_LIMIT):
            sock.sendall(GATEWAY_HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            reply = read_reply(sock)
            assert reply.status == 200 and reply.json() == body.decode()


def test_a_good_chunked_request_is_served_and_the_connection_stays_in_step(gateway: ApiGateway) -> None:
    chunked = (
        b"Transfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'1 ; quoted = "a \\" b" ; flag\r\n \r\n'
        b"0000A\r\nchunked!!!\r\n"
        b"0\r\nX-Trailer: dropped\r\n\r\n"
    )
    with connect(gateway.port) as sock:
        sock.sendall(GATEWAY_HEAD + chunked)
        reply = read_reply(sock)
        assert reply.status == 200 and reply.json() == "hello chunked!!!"
        # The body was consumed exactly: the next request on the connection is read as one.
        sock.sendall(GATEWAY_HEAD + b"Content-Length: 2\r\n\r\nok")
        assert read_reply(sock).json() == "ok"


def test_a_chunked_body_at_the_limit_is_served(gateway: ApiGateway) -> None:
    half = GATEWAY_LIMIT // 2
    body = f"{half:x}\r\n".encode() + b"a" * half + b"\r\n"
    reply, _ = exchange(
        gateway.port, GATEWAY_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body * 2 + b"0\r\n\r\n"
    )
    assert reply.status == 200 and reply.json() == "a" * GATEWAY_LIMIT


def test_the_running_chunk_total_is_refused_as_soon_as_it_exceeds_the_limit(gateway: ApiGateway) -> None:
    first = b"a" * (GATEWAY_LIMIT - 4)
    # The second chunk's data is never sent: the answer comes after its size line alone.
    data = f"{len(first):x}\r\n".encode() + first + b"\r\n5\r\n"
    reply, closed = exchange(gateway.port, GATEWAY_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + data)
    assert reply.status == 413 and reply.headers["x-amzn-errortype"] == "RequestTooLongException" and closed


def test_imds_serves_a_chunked_token_request() -> None:
    with ImdsServer() as imds:
        head = f"PUT {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n{TTL_HEADER}: 60\r\n".encode()
        reply, _ = exchange(imds.port, head + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert reply.status == 200 and reply.body


def test_kms_and_dynamodb_still_require_a_length() -> None:
    backend = "http://127.0.0.1:9"
    with KmsFront(backend=backend, trusted_root=self_signed_root()) as front:
        reply, closed = exchange(front.port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 411 and reply.json()["__type"] == "SerializationException" and closed
    proxy = DynamoDbFaultProxy(backend, region="us-east-1", credentials=("a", "b"))
    proxy.start()
    try:
        reply, closed = exchange(proxy.port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.status == 411 and reply.json()["__type"].endswith("#ValidationException") and closed
    finally:
        proxy.stop()


# -- the reader itself -----------------------------------------------------------------


class CountingReader:
    """A request stream that counts the bytes taken from it."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)
        self.taken = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.stream.read(size)
        self.taken += len(data)
        return data

    def readline(self, size: int = -1, /) -> bytes:
        data = self.stream.readline(size)
        self.taken += len(data)
        return data


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def test_the_reader_takes_nothing_of_a_body_it_refuses() -> None:
    reader = CountingReader(b"x" * 1000)
    with pytest.raises(RequestError) as refused:
        read_body(reader, headers(Content_Length="1000"), limit=999)
    assert refused.value.status == 413 and refused.value.code == "BodyTooLarge" and reader.taken == 0


def test_the_chunked_reader_never_buffers_past_the_limit() -> None:
    first = b"a" * 90
    stream = f"{len(first):x}\r\n".encode() + first + b"\r\n" + b"20\r\n" + b"b" * 32 + b"\r\n0\r\n\r\n"
    reader = CountingReader(stream)
    with pytest.raises(RequestError) as refused:
        read_body(reader, headers(Transfer_Encoding="chunked"), limit=100)
    assert refused.value.status == 413
    # The first chunk and the second's size line were read; none of the second chunk's data.
    assert reader.taken == len(stream) - len(b"b" * 32 + b"\r\n0\r\n\r\n")


def test_a_body_cut_short_is_incomplete_not_a_shorter_body() -> None:
    with pytest.raises(IncompleteBody):
        read_body(CountingReader(b"abc"), headers(Content_Length="5"), limit=100)
    with pytest.raises(IncompleteBody):
        read_body(CountingReader(b"5\r\nabc"), headers(Transfer_Encoding="chunked"), limit=100)


# -- the idle timeout --------------------------------------------------------------------

HALF_SENT = {
    "headers cut short": GATEWAY_HEAD + b"Content-Le",
    "body cut short": GATEWAY_HEAD + b"Content-Length: 10\r\n\r\nabc",
    "chunked body cut short": GATEWAY_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
    "nothing after a request": GATEWAY_HEAD + b"Content-Length: 2\r\n\r\nok",
}


def handler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


@pytest.mark.parametrize("data", HALF_SENT.values(), ids=HALF_SENT.keys())
def test_an_idle_connection_is_closed_and_its_thread_ends(data: bytes) -> None:
    idle = 0.5
    gateway = ApiGateway(GatewayConfig(limits=ConnectionLimits(idle_timeout=idle)), echo)
    gateway.start()
    try:
        before = handler_threads()
        with connect(gateway.port) as sock:
            sock.sendall(data)
            sent = time.monotonic()
            assert wait_until(lambda: len(handler_threads() - before) == 1)
            (thread,) = handler_threads() - before
            if data.endswith(b"ok"):
                assert read_reply(sock).status == 200
            assert closed_by_server(sock)
            waited = time.monotonic() - sent
        assert idle * 0.8 <= waited < SOCKET_TIMEOUT
        thread.join(timeout=3)
        assert not thread.is_alive()
    finally:
        gateway.stop()


def test_the_default_idle_timeout_is_ten_seconds() -> None:
    assert ConnectionLimits().idle_timeout == 10.0
    assert GatewayConfig().limits.idle_timeout == 10.0


@pytest.mark.parametrize(("idle", "cap"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_limits_must_be_positive(idle: float, cap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        ConnectionLimits(idle_timeout=idle, max_connections=cap)


# -- the connection cap ----------------------------------------------------------------


def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    gateway = ApiGateway(GatewayConfig(limits=ConnectionLimits(idle_timeout=5.0, max_connections=2)), echo)
    gateway.start()
    request = GATEWAY_HEAD + b"Content-Length: 2\r\n\r\nok"
    try:
        held = [connect(gateway.port), connect(gateway.port)]
        for sock in held:
            sock.sendall(request)
            assert read_reply(sock).status == 200  # served, and kept open
        for _ in range(3):
            reply, closed = exchange(gateway.port, request)
            assert reply.status == 503 and closed
            assert reply.headers["x-amzn-errortype"] == "ServiceUnavailableException"
            assert reply.headers["retry-after"] == "1"
        held.pop().close()

        def served() -> bool:
            return exchange(gateway.port, request)[0].status == 200

        # The freed place is taken once the closed connection's thread has ended.
        assert wait_until(served)
        held[0].sendall(request)
        assert read_reply(held[0]).status == 200
        held[0].close()
    finally:
        gateway.stop()


class Plain(LoopbackHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_the_server_counts_open_connections_and_stop_ends_them() -> None:
    server = LoopbackServer(Plain, None, name="plain", host="127.0.0.1", port=0)
    server.start()
    try:
        assert server.limits == ConnectionLimits()
        socks = [connect(server.port) for _ in range(3)]
        assert wait_until(lambda: server.open_connections == 3)
        socks[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_reply(socks[0]).status == 204
        socks.pop().close()
        assert wait_until(lambda: server.open_connections == 2)
        server.stop()
        # A stopped server ends its kept-alive connections rather than serving them on.
        assert all(closed_by_server(sock) for sock in socks)
        assert server.open_connections == 0
        for sock in socks:
            sock.close()
    finally:
        server.stop()
