"""The parent's HTTP application: routes, error mapping and lifecycle (spec 3.2, 3.3).

``POST /decrypt`` runs the checks in upstream's order: media type, JSON, shape,
limits; then "no enclaves" (404) before credentials (500), so a parent without
enclaves never calls IMDS; then one enclave at random gets the request. Every error
body is ``{"code", "message"}``; the 200 body is the enclave's reply with the field
keys sorted, ``fields`` left out when the enclave reported a global failure.

``POST /decrypt/batch`` takes ``{"requests": [...]}`` (1 to ``MAX_BATCH`` decrypt
requests, each held to the limits of ``POST /decrypt``), runs the same checks, and sends
the whole batch to one enclave as one message; the 200 body is ``{"replies": [...]}``,
one reply per request in request order, each shaped like ``POST /decrypt``'s.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vault.common.messages import (
    Credential,
    EnclaveBatchReply,
    EnclaveBatchRequest,
    EnclaveReply,
    EnclaveRequest,
)
from vault.parent.config import MAX_BODY_SIZE, REQUEST_TIMEOUT
from vault.parent.credentials import CredentialProvider
from vault.parent.errors import (
    EnclaveNotFound,
    EnclaveUnavailable,
    MalformedJson,
    ParentError,
    UnsupportedMediaType,
    error_response,
)
from vault.parent.middleware import BodyLimitMiddleware, TimeoutMiddleware
from vault.parent.registry import EnclaveDescription, EnclaveRegistry
from vault.parent.validation import parse_batch_request, parse_decrypt_request

log = logging.getLogger(__name__)


class EnclaveForwarder(Protocol):
    async def decrypt(self, cid: int, request: EnclaveRequest) -> EnclaveReply:
        """The enclave's reply; raise :class:`EnclaveUnavailable` when it gave none usable."""
        ...

    async def decrypt_batch(self, cid: int, request: EnclaveBatchRequest) -> EnclaveBatchReply:
        """One reply per request of the batch, in order; :class:`EnclaveUnavailable` otherwise."""
        ...


def _random_enclave(enclaves: Sequence[EnclaveDescription]) -> EnclaveDescription:
    return random.choice(enclaves)


@dataclass
class ParentServices:
    """Everything the routes depend on, built once per application."""

    registry: EnclaveRegistry
    credentials: CredentialProvider
    enclaves: EnclaveForwarder
    choose_enclave: Callable[[Sequence[EnclaveDescription]], EnclaveDescription] = field(
        default=_random_enclave
    )


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters allowed."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media_type.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def reply_body(reply: EnclaveReply) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if reply.fields is not None:
        body["fields"] = {key: reply.fields[key] for key in sorted(reply.fields)}
    body["errors"] = list(reply.errors)
    if reply.code is not None:
        body["code"] = reply.code.value
    return body


def render_reply(cid: int, reply: EnclaveReply) -> Response:
    return _render(cid, reply_body(reply))


def render_batch_reply(cid: int, reply: EnclaveBatchReply) -> Response:
    return _render(cid, {"replies": [reply_body(entry) for entry in reply.replies]})


def _render(cid: int, body: dict[str, Any]) -> Response:
    try:
        content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        encoded = content.encode("utf-8")
    except ValueError:
        # NaN or a lone surrogate: the enclave's JSON reader accepted what JSON cannot carry.
        raise EnclaveUnavailable(f"enclave {cid} sent a reply that is not valid JSON") from None
    return Response(encoded, media_type="application/json")


def create_app(
    services: ParentServices,
    *,
    max_body_size: int = MAX_BODY_SIZE,
    request_timeout: float = REQUEST_TIMEOUT,
) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def enclaves(request: Request) -> Response:
        return JSONResponse([enclave.to_json() for enclave in services.registry.enclaves()])

    async def json_body(request: Request) -> bytes:
        if not is_json_media_type(request.headers.get("content-type")):
            raise UnsupportedMediaType()
        try:
            return await request.body()
        except ClientDisconnect:
            # Nobody is left to read an answer; this one only ends the request.
            raise MalformedJson("Request body incomplete: the client disconnected") from None

    async def enclave_and_credential() -> tuple[EnclaveDescription, Credential]:
        # "No enclaves" (404) before credentials (500): a parent without enclaves never calls IMDS.
        available = services.registry.enclaves()
        if not available:
            raise EnclaveNotFound()
        credential = await services.credentials.get()
        return services.choose_enclave(available), credential

    async def decrypt(request: Request) -> Response:
        decrypt_request = parse_decrypt_request(await json_body(request))
        enclave, credential = await enclave_and_credential()
        reply = await services.enclaves.decrypt(
            enclave.enclave_cid, EnclaveRequest(credential=credential, request=decrypt_request)
        )
        log.info(
            "decrypt answered",
            extra={
                "fields": {
                    "enclave_cid": enclave.enclave_cid,
                    "field_count": len(decrypt_request.fields),
                    "error_count": len(reply.errors),
                    "global_failure": reply.is_global_failure,
                    "failure_code": reply.code.value if reply.code else None,
                }
            },
        )
        return render_reply(enclave.enclave_cid, reply)

    async def decrypt_batch(request: Request) -> Response:
        batch = parse_batch_request(await json_body(request))
        # One enclave takes the whole batch: one connection, one credential.
        enclave, credential = await enclave_and_credential()
        reply = await services.enclaves.decrypt_batch(
            enclave.enclave_cid, EnclaveBatchRequest(credential=credential, batch=batch.requests)
        )
        if len(reply.replies) != len(batch.requests):
            # Replies are matched to requests by position: any other count matches nothing.
            raise EnclaveUnavailable(f"enclave {enclave.enclave_cid} answered a batch with the wrong count")
        log.info(
            "decrypt batch answered",
            extra={
                "fields": {
                    "enclave_cid": enclave.enclave_cid,
                    "entries": len(batch.requests),
                    "refused": sum(1 for entry in reply.replies if entry.is_global_failure),
                }
            },
        )
        return render_batch_reply(enclave.enclave_cid, reply)

    async def parent_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ParentError)
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        log.log(level, "request refused", extra={"fields": {"status": exc.status, "reason": exc.message}})
        return error_response(exc.status, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        # Starlette's details ("Not Found") are replaced by the service's own texts.
        return error_response(exc.status_code, headers=exc.headers)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error", exc_info=exc)
        return error_response(500)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.registry.start()
        try:
            yield
        finally:
            await services.registry.stop()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/enclaves", enclaves, methods=["GET"]),
            Route("/decrypt", decrypt, methods=["POST"]),
            Route("/decrypt/batch", decrypt_batch, methods=["POST"]),
        ],
        middleware=[
            Middleware(TimeoutMiddleware, timeout=request_timeout),
            Middleware(BodyLimitMiddleware, max_body_size=max_body_size),
        ],
        exception_handlers={
            ParentError: parent_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
