"""The HTTPS client for the parent's ``POST /decrypt`` and ``POST /decrypt/batch`` (spec 1.9 step 3, D2).

Redirects are never followed (a redirect would carry the key blob elsewhere), the
parent's certificate is always verified (against ``PARENT_CA_BUNDLE`` when given), and
nothing is taken from the process environment: no proxies, no ``.netrc``, no
``REQUESTS_CA_BUNDLE``. Every failure becomes an :class:`ApiError` with its own stable
code, so a client can tell "the enclave refused" from "the parent is not there".
A failure after which the enclave may still have acted (the request went out and no
answer came: a read timeout, a connection lost mid-exchange, the parent's 504) is an
:class:`OutcomeUnknown`, so that the audit does not record it as a failure.

The reply carries plaintext: it is returned, never logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from urllib3.exceptions import ProtocolError

from vault.api.errors import ApiError, ErrorCode
from vault.api.observability import logger
from vault.common.messages import (
    MAX_BATCH,
    BatchDecryptRequest,
    DecryptRequest,
    EnclaveErrorCode,
    EnclaveReply,
)

_JSON = "application/json"
#: How much of a parent error message a log line may carry.
_MAX_LOGGED_MESSAGE = 200


class OutcomeUnknown(ApiError):
    """The request reached (or may have reached) the parent, and no answer came back."""


def enclave_unavailable() -> ApiError:
    return ApiError(503, ErrorCode.ENCLAVE_UNAVAILABLE, "No enclave is available to decrypt; retry later")


def enclave_timeout() -> ApiError:
    return OutcomeUnknown(
        504,
        ErrorCode.ENCLAVE_TIMEOUT,
        "The enclave took the request but did not answer in time (it may be waiting on KMS); retry later",
    )


def kms_timeout() -> ApiError:
    return ApiError(504, ErrorCode.KMS_TIMEOUT, "KMS did not answer the enclave in time; retry later")


def parent_error() -> ApiError:
    return ApiError(502, ErrorCode.PARENT_ERROR, "The decryption service returned an unexpected response")


class ParentClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        ca_bundle: str | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        # The parent serves batches beside single decrypts: ``{url}/batch``.
        self._batch_url = f"{url}/batch"
        self._timeout = timeout
        self._verify: str | bool = ca_bundle if ca_bundle is not None else True
        self._session = session if session is not None else requests.Session()
        self._session.trust_env = False

    def decrypt(self, request: DecryptRequest) -> EnclaveReply:
        """The enclave's reply for ``request``; it always has ``fields`` (global failures raise)."""
        body = self._post(self._url, request.to_wire())
        try:
            reply = EnclaveReply.model_validate(body)
        except ValidationError as exc:
            logger.error("Parent reply is not a decrypt reply", extra={"error_type": type(exc).__name__})
            raise parent_error() from exc
        failure = reply_failure(reply)
        if failure is not None:
            raise failure
        return reply

    def decrypt_batch(self, requests: Sequence[DecryptRequest]) -> list[EnclaveReply]:
        """One reply per request, in order, from the parent's ``POST /decrypt/batch``.

        Only failures of the whole exchange raise (as for :meth:`decrypt`); a request the
        enclave refused is its own reply, which :func:`reply_failure` turns into its error.
        """
        batch = BatchDecryptRequest(requests=list(requests))
        body = self._post(self._batch_url, batch.to_wire())
        try:
            replies = _BatchReply.model_validate(body).replies
        except ValidationError as exc:
            logger.error("Parent reply is not a batch reply", extra={"error_type": type(exc).__name__})
            raise parent_error() from exc
        if len(replies) != len(requests):
            # Replies are matched to vaults by position: another count matches none of them.
            logger.error("Parent answered a batch with the wrong count", extra={"reply_count": len(replies)})
            raise parent_error()
        return replies

    def _post(self, url: str, payload: dict[str, Any]) -> Any:
        """The parent's 200 body as JSON; every other outcome raises its :class:`ApiError`."""
        try:
            response = self._session.post(
                url,
                json=payload,
                headers={"Accept": _JSON},
                # requests applies this to connecting and to each read, separately.
                timeout=self._timeout,
                allow_redirects=False,
                verify=self._verify,
            )
        except requests.Timeout as exc:
            logger.error("Parent timed out", extra={"error_type": type(exc).__name__})
            # A connect timeout never sent the request; a read timeout did.
            timed_out = ApiError if isinstance(exc, requests.ConnectTimeout) else OutcomeUnknown
            raise timed_out(
                504, ErrorCode.PARENT_TIMEOUT, "The decryption service did not answer in time"
            ) from exc
        except requests.ConnectionError as exc:
            logger.error("Parent unreachable", extra={"error_type": type(exc).__name__})
            # requests wraps a connection lost after the request went out as a ProtocolError;
            # a refused connection or a failed handshake never sent it.
            lost = exc.args and isinstance(exc.args[0], ProtocolError)
            unreachable = OutcomeUnknown if lost else ApiError
            raise unreachable(
                502, ErrorCode.PARENT_UNREACHABLE, "The decryption service is unreachable"
            ) from exc
        except requests.RequestException as exc:
            logger.error("Parent request failed", extra={"error_type": type(exc).__name__})
            raise parent_error() from exc
        with response:
            return self._body(response)

    def _body(self, response: requests.Response) -> Any:
        status = response.status_code
        if status != 200:
            logger.error(
                "Parent refused the decrypt request",
                extra={"parent_status": status, "parent_message": _error_message(response)},
            )
            # 404 is the parent's "No enclaves found" (spec 3.3); 503 is a busy, dead or absent enclave.
            if status in (404, 503):
                raise enclave_unavailable()
            # 504 is an enclave that is alive and took the request, then stayed silent.
            if status == 504:
                raise enclave_timeout()
            raise parent_error()
        try:
            return response.json()
        except ValueError as exc:
            logger.error("Parent reply is not a decrypt reply", extra={"error_type": type(exc).__name__})
            raise parent_error() from exc


class _BatchReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    replies: list[EnclaveReply] = Field(max_length=MAX_BATCH)


def reply_failure(reply: EnclaveReply) -> ApiError | None:
    """The error of a reply that is a global failure (the enclave refused the request), else ``None``."""
    if not reply.is_global_failure:
        return None
    enclave_code = reply.code.value if reply.code is not None else None
    logger.error("Enclave could not decrypt", extra={"enclave_code": enclave_code})
    if reply.code is EnclaveErrorCode.KMS_TIMEOUT:
        return kms_timeout()
    return ApiError(
        502,
        ErrorCode.ENCLAVE_DECRYPT_FAILED,
        "The enclave could not decrypt the vault",
        details={"enclaveCode": enclave_code, "errors": list(reply.errors)},
    )


def _error_message(response: requests.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    message = body.get("message") if isinstance(body, dict) else None
    return message[:_MAX_LOGGED_MESSAGE] if isinstance(message, str) else None
