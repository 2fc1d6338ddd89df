"""ASGI middleware for the two limits every request is held to: body size and time.

Both answer in the service's JSON error shape. They are plain ASGI (not Starlette's
``BaseHTTPMiddleware``) so that the body limit can act while the body is streaming in
and the timeout can cancel whatever the request is waiting on.
"""

from __future__ import annotations

import logging

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.parent.errors import error_response

log = logging.getLogger(__name__)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over ``max_body_size`` bytes with 413.

    A declared ``Content-Length`` over the limit is refused before the application
    runs; a body without one (chunked) is counted as it arrives and refused as soon as
    it passes the limit, so an oversized body is never buffered whole.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_size:
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"Request body exceeds the limit of {self.max_body_size} bytes"
        await error_response(413, message, headers={"Connection": "close"})(scope, receive, send)


class TimeoutMiddleware:
    """Answer 408 when a request (reading its body included) takes longer than ``timeout``."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with anyio.move_on_after(self.timeout) as scope_timer:
            await self.app(scope, receive, tracking_send)
        if scope_timer.cancelled_caught:
            log.warning(
                "request timed out", extra={"fields": {"path": scope.get("path"), "timeout": self.timeout}}
            )
            if not started:
                message = f"Request not completed within {self.timeout:g} seconds"
                await error_response(408, message, headers={"Connection": "close"})(scope, receive, send)
