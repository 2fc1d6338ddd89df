"""Forwarding one decrypt request to an enclave over vsock (spec 4, decision D12).

Each request opens its own connection, writes one frame and reads one frame back, as
upstream does. The socket calls block, so they run on worker threads, at most
``workers`` at once. Unlike upstream, nothing waits without bound: the connect and
the reply have deadlines, and the whole exchange (waiting for a worker included) has
one more, after which the socket is shut down so the worker thread ends too.

Every way the enclave can fail to answer (refused, closed early, cut off mid-frame,
unreadable reply, busy) becomes :class:`EnclaveUnavailable`, i.e. a 503 the API may
retry, with a message saying which it was. An enclave that took the request and then
stayed silent past the read budget is alive but slow (typically waiting on KMS): that
is :class:`EnclaveTimeout`, a 504.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from typing import Any

import anyio
from pydantic import ValidationError

from vault.common.framing import FrameTooLarge, FrameTruncated, FramingError, read_json, write_json
from vault.common.messages import (
    BUSY_MESSAGE,
    EnclaveBatchReply,
    EnclaveBatchRequest,
    EnclaveErrorCode,
    EnclaveReply,
    EnclaveRequest,
)
from vault.common.transport import ENCLAVE_PORT, VsockTransport
from vault.parent.config import EnclaveTimeouts
from vault.parent.errors import EnclaveTimeout, EnclaveUnavailable

#: Extra time the event loop grants a worker beyond its own deadlines, so that the
#: worker's precise error (refused, truncated, ...) normally wins over a bare timeout.
ABORT_MARGIN = 0.25
#: A batch's read budget, as a multiple of a single request's: its entries' KMS calls
#: overlap only in part. With the defaults, 4 of the 5 s the API gives the parent.
BATCH_READ_FACTOR = 1.6


class _Exchange:
    """One connection's request and reply; :meth:`abort` may be called from another thread."""

    def __init__(self, transport: VsockTransport, cid: int, port: int, timeouts: EnclaveTimeouts) -> None:
        self.transport = transport
        self.cid = cid
        self.port = port
        self.timeouts = timeouts
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._aborted = False
        #: The whole request reached the enclave's socket: from then on silence means "slow".
        self.sent = False

    def run(self, message: dict[str, Any]) -> Any:
        try:
            sock = self.transport.connect(self.cid, self.port, self.timeouts.connect)
        except OSError as exc:
            # The transport wraps the cause (refused, no such socket, timed out) in its own error.
            if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
                raise EnclaveUnavailable(f"enclave {self.cid} did not accept a connection in time") from None
            raise EnclaveUnavailable(f"enclave {self.cid} is not accepting connections") from None
        with self._lock:
            if self._aborted:
                sock.close()
                raise EnclaveUnavailable(f"enclave {self.cid} did not answer in time")
            self._sock = sock
        try:
            # One budget for sending the request and receiving the whole reply: a per-recv
            # timeout alone would let an enclave that drips bytes hold the request.
            deadline = time.monotonic() + self.timeouts.read
            sock.settimeout(self.timeouts.read)
            write_failure: FramingError | None = None
            try:
                write_json(sock, message)
                self.sent = True
            except FramingError as exc:
                # A busy enclave answers without reading the request and closes, so the
                # write can fail while its reply is already waiting: read it anyway.
                write_failure = exc
            try:
                return read_json(sock, deadline=deadline)
            except FramingError as exc:
                reported = exc if write_failure is None or self._aborted else write_failure
                message_text, timed_out = _describe_failure(self.cid, reported, self._aborted)
                raise (
                    timeout_error(message_text)
                    if timed_out and self.sent
                    else EnclaveUnavailable(message_text)
                ) from None
        except OSError:
            raise EnclaveUnavailable(f"enclave {self.cid} connection failed") from None
        finally:
            with self._lock:
                self._sock = None
            sock.close()

    def abort(self) -> None:
        """Make a blocked :meth:`run` return now (its socket is shut down)."""
        with self._lock:
            self._aborted = True
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def timeout_error(message: str) -> EnclaveTimeout:
    return EnclaveTimeout(f"{message} (it accepted the request; it may be waiting on KMS)")


def _describe_failure(cid: int, exc: FramingError, aborted: bool) -> tuple[str, bool]:
    """What went wrong, and whether it was the enclave's silence (a timeout)."""
    # Framing errors never contain payload bytes, but the reply names the case only.
    if aborted:
        return f"enclave {cid} did not answer in time", True
    if isinstance(exc, FrameTruncated):
        if exc.part == "header" and exc.received == 0:
            return f"enclave {cid} closed the connection without replying", False
        return f"enclave {cid} sent a truncated reply", False
    if isinstance(exc, FrameTooLarge):
        return f"enclave {cid} sent an oversized reply", False
    cause = exc.__cause__
    if isinstance(cause, TimeoutError) or str(exc).endswith("timed out"):
        return f"enclave {cid} did not answer in time", True
    if isinstance(cause, OSError):
        # Reset or broken pipe: the enclave closed without reading the whole request.
        return f"enclave {cid} closed the connection without replying", False
    return f"enclave {cid} sent an unreadable reply", False


def interpret_reply(cid: int, raw: Any) -> EnclaveReply:
    """Validate a reply; a busy enclave or a reply of the wrong shape is :class:`EnclaveUnavailable`."""
    try:
        reply = EnclaveReply.model_validate(raw)
    except ValidationError:
        raise EnclaveUnavailable(f"enclave {cid} sent a reply of the wrong shape") from None
    if reply.is_global_failure and (reply.code is EnclaveErrorCode.BUSY or reply.errors == [BUSY_MESSAGE]):
        raise EnclaveUnavailable(f"enclave {cid} is busy")
    return reply


def interpret_batch_reply(cid: int, raw: Any, count: int) -> EnclaveBatchReply:
    """Validate a batch's reply: ``count`` replies in order.

    An enclave that refused the frame as a whole answers with one reply (busy: raised as
    for a single request); any other whole-frame refusal is every entry's reply.
    """
    if isinstance(raw, dict) and "replies" in raw:
        try:
            batch = EnclaveBatchReply.model_validate(raw)
        except ValidationError:
            raise EnclaveUnavailable(f"enclave {cid} sent a batch reply of the wrong shape") from None
        if len(batch.replies) != count:
            raise EnclaveUnavailable(f"enclave {cid} answered a batch with the wrong count")
        return batch
    whole = interpret_reply(cid, raw)
    if not whole.is_global_failure:
        # Plaintext for one request where a batch was asked: matched to no entry, never forwarded.
        raise EnclaveUnavailable(f"enclave {cid} answered a batch with a single reply")
    return EnclaveBatchReply(replies=[whole] * count)


class EnclaveClient:
    def __init__(
        self,
        transport: VsockTransport,
        timeouts: EnclaveTimeouts,
        *,
        workers: int,
        port: int = ENCLAVE_PORT,
    ) -> None:
        self.transport = transport
        self.timeouts = timeouts
        self.port = port
        self._limiter = anyio.CapacityLimiter(workers)

    async def decrypt(self, cid: int, request: EnclaveRequest) -> EnclaveReply:
        return interpret_reply(cid, await self._exchange(cid, request.to_wire(), self.timeouts))

    async def decrypt_batch(self, cid: int, request: EnclaveBatchRequest) -> EnclaveBatchReply:
        """The whole batch in one frame on one connection, with a longer read budget."""
        timeouts = replace(self.timeouts, read=self.timeouts.read * BATCH_READ_FACTOR)
        raw = await self._exchange(cid, request.to_wire(), timeouts)
        return interpret_batch_reply(cid, raw, len(request.batch))

    async def _exchange(self, cid: int, message: dict[str, Any], timeouts: EnclaveTimeouts) -> Any:
        exchange = _Exchange(self.transport, cid, self.port, timeouts)
        try:
            with anyio.fail_after(timeouts.total + ABORT_MARGIN):
                raw = await anyio.to_thread.run_sync(
                    exchange.run, message, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            exchange.abort()
            late = f"enclave {cid} did not answer in time"
            if exchange.sent:
                raise timeout_error(late) from None
            # Still waiting for a worker thread or for the connection: the enclave never had it.
            raise EnclaveUnavailable(late) from None
        except anyio.get_cancelled_exc_class():
            # The HTTP request was abandoned (timeout, shutdown): release the worker too.
            exchange.abort()
            raise
        return raw
