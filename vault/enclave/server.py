"""The enclave's vsock server: one request per connection, a thread per connection.

Upstream behaviour kept: listen on port 5050, read one frame, answer one frame, close;
at most 32 connections at once. Changed by decision D12: every socket has timeouts (a
silent or slow client loses its slot after ``read_timeout`` seconds for the whole
request), and a connection over the limit is accepted and answered with a framed
``enclave busy`` error instead of being dropped, so the parent can answer 503.

Every loop is bounded: the accept loop polls its stop flag, each connection thread
ends after one exchange or a timeout, and :meth:`EnclaveServer.shutdown` waits for the
threads at most ``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from vault.common.framing import (
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    FrameTooLarge,
    FrameTruncated,
    FramingError,
    decode_header,
    read_frame,
    write_frame,
)
from vault.common.messages import BUSY_MESSAGE, EnclaveBatchReply, EnclaveErrorCode, EnclaveReply
from vault.common.transport import ENCLAVE_PORT, VMADDR_CID_ANY, VsockTransport
from vault.enclave.batch import BatchHandler
from vault.enclave.handler import RequestHandler

logger = logging.getLogger(__name__)

#: Upstream's ``MAX_CONCURRENT_CONNECTIONS``.
MAX_CONNECTIONS = 32
_DISCARD_CHUNK = 64 * 1024
_DISCARD_LIMIT = MAX_MESSAGE_SIZE + HEADER_SIZE


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the enclave listens.

    ``read_timeout`` bounds the time to receive a whole request, ``write_timeout`` the
    time to send the reply; request processing itself (KMS, HPKE, CEL) is not bounded
    here.

    Over the limit, up to ``max_busy_replies`` connections at a time get their busy
    reply from a short-lived thread that first lets the client finish sending its
    request (for at most ``busy_read_timeout``, discarding it without buffering): a
    client that writes its request before reading, as the parent does, then reads the
    reply instead of failing on a closed socket. Beyond that, the accept loop answers
    at once, waiting at most ``busy_write_timeout`` for a client that does not read.
    """

    port: int = ENCLAVE_PORT
    cid: int = VMADDR_CID_ANY
    max_connections: int = MAX_CONNECTIONS
    read_timeout: float = 10.0
    write_timeout: float = 10.0
    max_busy_replies: int = 8
    busy_read_timeout: float = 1.0
    busy_write_timeout: float = 1.0
    # Short: on a Unix or emulated vsock listener shutdown() does not wake accept(), so this
    # bounds how long a stop waits; ten wake-ups a second cost nothing measurable.
    accept_poll_interval: float = 0.1
    shutdown_timeout: float = 5.0
    backlog: int = 128

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.max_busy_replies < 0:
            raise ValueError("max_busy_replies cannot be negative")
        for name in (
            "read_timeout",
            "write_timeout",
            "busy_read_timeout",
            "busy_write_timeout",
            "accept_poll_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.shutdown_timeout < 0:
            raise ValueError("shutdown_timeout cannot be negative")


def encode_reply(reply: EnclaveReply | EnclaveBatchReply) -> bytes:
    """Serialize a reply (or a batch's replies) for the wire (UTF-8 JSON, compact)."""
    message = reply.to_wire()
    try:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (only reachable from JSON escapes in the request) cannot be
        # UTF-8; ASCII escapes keep the reply valid JSON.
        return json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode("ascii")


_BUSY_FRAME_BODY = encode_reply(EnclaveReply.failure(EnclaveErrorCode.BUSY, BUSY_MESSAGE))


class EnclaveServer:
    """Serve :class:`RequestHandler` on a vsock (or emulated vsock) listener."""

    def __init__(self, transport: VsockTransport, handler: RequestHandler, config: ServerConfig) -> None:
        self._transport = transport
        self._handler = handler
        # A frame with a ``batch`` key is a batch; every other frame reaches ``handler`` as before.
        self._frames = BatchHandler(handler)
        self._config = config
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._busy_slots = threading.BoundedSemaphore(max(config.max_busy_replies, 1))
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._active = 0
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._transport.describe(self._config.cid, self._config.port)

    @property
    def active_connections(self) -> int:
        """Connections currently holding a slot."""
        with self._lock:
            return self._active

    def bind(self) -> socket.socket:
        """Create the listening socket (idempotent); clients may connect once this returns."""
        if self._listener is not None:
            return self._listener
        listener = self._transport.listen(self._config.port, self._config.cid, self._config.backlog)
        # The timeout makes accept() return regularly so the loop notices shutdown().
        listener.settimeout(self._config.accept_poll_interval)
        self._listener = listener
        logger.info("enclave listening", extra={"fields": {"address": self.address}})
        return listener

    def serve_forever(self) -> None:
        """Accept connections in the calling thread until :meth:`shutdown`."""
        listener = self.bind()
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    # Transient accept failures (e.g. EMFILE): back off instead of spinning.
                    logger.warning("accept failed")
                    self._stop.wait(self._config.accept_poll_interval)
                    continue
                self._dispatch(conn)
        finally:
            with contextlib.suppress(OSError):
                listener.close()

    def start(self) -> None:
        """Bind, then serve in a background thread."""
        self.bind()
        thread = threading.Thread(target=self.serve_forever, name="enclave-accept", daemon=True)
        self._accept_thread = thread
        thread.start()

    def shutdown(self) -> None:
        """Stop accepting, then wait (bounded) for in-flight connections to finish."""
        self._stop.set()
        listener = self._listener
        if listener is not None:
            # Wakes a blocked accept() at once on Linux; the poll timeout covers the rest.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + self._config.shutdown_timeout
        if self._accept_thread is not None and self._accept_thread is not threading.current_thread():
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()

    def __enter__(self) -> EnclaveServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- connections -------------------------------------------------------------------

    def _dispatch(self, conn: socket.socket) -> None:
        if self._slots.acquire(blocking=False):
            with self._lock:
                self._active += 1
            if not self._spawn(self._serve_connection, conn):
                # No thread could be started: give the slot back and answer busy.
                self._release_slot()
                self._reject_busy(conn, deadline=None)
            return
        logger.warning("connection refused: enclave busy")
        if self._config.max_busy_replies and self._busy_slots.acquire(blocking=False):
            if self._spawn(self._serve_busy, conn):
                return
            self._busy_slots.release()
        self._reject_busy(conn, deadline=None)

    def _spawn(self, target: Callable[[socket.socket], None], conn: socket.socket) -> bool:
        def run() -> None:
            try:
                target(conn)
            finally:
                with self._lock:
                    self._workers.discard(threading.current_thread())

        worker = threading.Thread(target=run, name="enclave-conn", daemon=True)
        with self._lock:
            self._workers.add(worker)
        try:
            worker.start()
        except RuntimeError:
            with self._lock:
                self._workers.discard(worker)
            return False
        return True

    def _release_slot(self) -> None:
        with self._lock:
            self._active -= 1
        self._slots.release()

    def _serve_busy(self, conn: socket.socket) -> None:
        try:
            self._reject_busy(conn, deadline=time.monotonic() + self._config.busy_read_timeout)
        finally:
            self._busy_slots.release()

    def _reject_busy(self, conn: socket.socket, deadline: float | None) -> None:
        try:
            if deadline is not None:
                # Silence, a truncated or an oversize request: answer busy all the same.
                with contextlib.suppress(FramingError, OSError):
                    _skip_request(conn, deadline)
            conn.settimeout(self._config.busy_write_timeout)
            write_frame(conn, _BUSY_FRAME_BODY)
        except (FramingError, OSError):
            pass
        finally:
            _close(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            reply = self._exchange(conn)
            if reply is not None:
                self._send(conn, reply)
        except Exception as exc:  # noqa: BLE001 - a connection thread must end quietly
            logger.error("connection failed", extra={"fields": {"exception": type(exc).__name__}})
        finally:
            _close(conn)
            self._release_slot()

    def _exchange(self, conn: socket.socket) -> EnclaveReply | EnclaveBatchReply | None:
        """Read one request and produce its reply; ``None`` when nobody is left to answer."""
        deadline = time.monotonic() + self._config.read_timeout
        try:
            raw = read_frame(conn, deadline=deadline)
        except FrameTooLarge as exc:
            # Refused from the header alone: the body is never read or allocated.
            return EnclaveReply.failure(EnclaveErrorCode.INVALID_REQUEST, str(exc))
        except FramingError as exc:
            if is_probe(exc):
                # Connected and closed without a byte: a liveness probe (the emulator's
                # supervisor, a load balancer's TCP check), not a failed request.
                logger.debug("connection closed before a request (probe)")
                return None
            logger.info("request not received", extra={"fields": {"error": str(exc)}})
            return EnclaveReply.failure(EnclaveErrorCode.INVALID_REQUEST, str(exc))
        return self._frames.handle_frame(raw)

    def _send(self, conn: socket.socket, reply: EnclaveReply | EnclaveBatchReply) -> None:
        try:
            body = encode_reply(reply)
        except (TypeError, ValueError) as exc:
            # Only an expression engine returning a non-JSON value can get here.
            logger.error("reply not serializable", extra={"fields": {"exception": type(exc).__name__}})
            body = encode_reply(EnclaveReply.failure(EnclaveErrorCode.INTERNAL, "internal error"))
        conn.settimeout(self._config.write_timeout)
        try:
            write_frame(conn, body)
        except FramingError as exc:
            logger.info("reply not delivered", extra={"fields": {"error": str(exc)}})


def is_probe(exc: FramingError) -> bool:
    """True for a connection that closed before sending a single byte of a request."""
    return isinstance(exc, FrameTruncated) and exc.part == "header" and exc.received == 0


def _skip_request(conn: socket.socket, deadline: float) -> None:
    """Read and discard one request frame, or what arrives of it by ``deadline``."""
    header = b""
    while len(header) < HEADER_SIZE:
        header += _receive(conn, HEADER_SIZE - len(header), deadline)
    remaining = decode_header(header)
    while remaining:
        remaining -= len(_receive(conn, min(remaining, _DISCARD_CHUNK), deadline))


def _receive(conn: socket.socket, most: int, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FramingError("timed out")
    conn.settimeout(left)
    data = conn.recv(most)
    if not data:
        raise FramingError("end of stream")
    return data


def _close(conn: socket.socket) -> None:
    """End the exchange so that the reply survives the close."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
    _discard_pending_input(conn)
    with contextlib.suppress(OSError):
        conn.close()


def _discard_pending_input(conn: socket.socket) -> None:
    # Closing a socket with unread input resets the connection, and the reset can make
    # the peer lose the reply still queued for it (a busy reply sent before the request
    # was read, or extra bytes after the one request). Discard what has already arrived,
    # without waiting for more.
    try:
        conn.setblocking(False)
    except OSError:
        return
    discarded = 0
    while discarded <= _DISCARD_LIMIT:
        try:
            chunk = conn.recv(_DISCARD_CHUNK)
        except OSError:
            # BlockingIOError: nothing more buffered; anything else: nothing to save.
            return
        if not chunk:
            return
        discarded += len(chunk)
