"""Batch frames inside the enclave: several decrypt requests, one connection, one reply.

A batch frame is ``{"batch": [DecryptRequest, ...], "credential": {...}}`` with at most
:data:`~vault.common.messages.MAX_BATCH` requests. Each request goes through
:meth:`RequestHandler.handle_request` exactly as if it had come alone: its own
authorization check (so an authorization moved to another entry no longer covers it),
its own replay-cache entry, its own KMS call under its own encryption context. One
entry's refusal is that entry's reply; the others are not affected. Only a frame that is
not a well-formed batch at all (no credential, not a list, too many entries) is refused
as a whole, with a single :class:`EnclaveReply` like any refused request.

Entries run on a few threads: each costs one KMS round trip, which waits on the network
(the vsock-proxy), not on the enclave's CPU.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from vault.common.messages import (
    BATCH_KEY,
    MAX_BATCH,
    Credential,
    DecryptRequest,
    EnclaveBatchReply,
    EnclaveErrorCode,
    EnclaveReply,
    EnclaveRequest,
)
from vault.enclave.handler import RequestHandler

logger = logging.getLogger(__name__)

#: Entries handled at once: enough to overlap KMS round trips, few enough for one vCPU.
DEFAULT_WORKERS = 4
_MAX_REPORTED = 3
_NAME_LIMIT = 64
#: Searched for before a frame is parsed twice: a single request never contains it as a key.
_MARKER = json.dumps(BATCH_KEY).encode("ascii")


def _invalid(message: str) -> EnclaveReply:
    return EnclaveReply.failure(EnclaveErrorCode.INVALID_REQUEST, message)


def _describe(exc: ValidationError) -> str:
    # The input may be a credential or a ciphertext: locations and rules only.
    problems = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [
        f"{'.'.join(str(part)[:_NAME_LIMIT] for part in problem['loc'])}: {problem['msg']}"
        for problem in problems[:_MAX_REPORTED]
    ]
    if len(problems) > _MAX_REPORTED:
        parts.append(f"and {len(problems) - _MAX_REPORTED} more")
    return "; ".join(parts)


def might_be_batch(raw: bytes) -> bool:
    """Cheap pre-check: only a frame containing ``"batch"`` is parsed as a possible batch."""
    return _MARKER in raw


class BatchHandler:
    """Routes a frame to the single-request handler or handles it as a batch; never raises."""

    def __init__(self, handler: RequestHandler, *, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._handler = handler
        self._workers = workers

    def handle_frame(self, raw: bytes) -> EnclaveReply | EnclaveBatchReply:
        """A single request's reply (unchanged wire format), or a batch's replies."""
        if not might_be_batch(raw):
            return self._handler.handle(raw)
        try:
            document: Any = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # Not JSON: the single-request path gives its usual, precise refusal.
            return self._handler.handle(raw)
        if not isinstance(document, dict) or BATCH_KEY not in document:
            return self._handler.handle(raw)
        return self.handle_document(document)

    def handle_document(self, document: dict[str, Any]) -> EnclaveReply | EnclaveBatchReply:
        started = time.perf_counter()
        try:
            credential = Credential.model_validate(document.get("credential"))
        except ValidationError as exc:
            return _invalid(f"invalid batch: credential: {_describe(exc)}")
        entries = document[BATCH_KEY]
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
            return _invalid(f"invalid batch: {BATCH_KEY} must be a list of 1 to {MAX_BATCH} requests")
        replies = self.handle_entries(credential, entries)
        logger.info(
            "decrypt batch handled",
            extra={
                "fields": {
                    "entries": len(replies),
                    "refused": sum(1 for reply in replies if reply.is_global_failure),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            },
        )
        return EnclaveBatchReply(replies=replies)

    def handle_entries(self, credential: Credential, entries: list[Any]) -> list[EnclaveReply]:
        """One reply per entry, in order; an entry that is not a request is refused alone."""

        def one(entry: Any) -> EnclaveReply:
            try:
                request = DecryptRequest.model_validate(entry)
            except ValidationError as exc:
                return _invalid(f"invalid request: {_describe(exc)}")
            return self._handler.handle_request(EnclaveRequest(credential=credential, request=request))

        if self._workers == 1 or len(entries) == 1:
            return [one(entry) for entry in entries]
        with ThreadPoolExecutor(
            max_workers=min(self._workers, len(entries)), thread_name_prefix="enclave-batch"
        ) as pool:
            return list(pool.map(one, entries))
