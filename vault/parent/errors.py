"""Refusals of the parent service and their single JSON shape.

Every error response, whoever produced it (a route, a middleware, the router for an
unknown path), is ``{"code": <HTTP status>, "message": <non-empty text>}``, so the API
tier can read one shape. Messages never quote request values: they name the field
and the rule (decision D9).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

INTERNAL_SERVER_ERROR = "Internal Server Error"
NO_ENCLAVES = "No enclaves found"

DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable entity",
    500: INTERNAL_SERVER_ERROR,
    503: "Service unavailable",
    504: "Gateway timeout",
}


class ParentError(Exception):
    """A refusal with the HTTP status to answer it with."""

    status = 500
    default_message = INTERNAL_SERVER_ERROR

    def __init__(self, message: str = "") -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class MalformedJson(ParentError):
    status = 400
    default_message = "Malformed JSON"


class ValidationFailed(ParentError):
    status = 400
    default_message = "Validation error"


class UnsupportedMediaType(ParentError):
    status = 415
    default_message = "Content-Type must be application/json"


class UnprocessableRequest(ParentError):
    status = 422
    default_message = "Request body does not have the expected shape"


class EnclaveNotFound(ParentError):
    status = 404
    default_message = NO_ENCLAVES


class CredentialsUnavailable(ParentError):
    """IMDS did not give usable credentials. The client only sees a generic 500."""

    status = 500
    default_message = INTERNAL_SERVER_ERROR


class EnclaveUnavailable(ParentError):
    """The enclave could not serve the request now (busy, down, silent, cut off); retryable."""

    status = 503
    default_message = "Enclave unavailable"


class EnclaveTimeout(EnclaveUnavailable):
    """The enclave took the request but did not answer within the read budget.

    It is alive (it accepted the connection and the request), so this is not "no enclave":
    the usual cause is a slow dependency inside the request, such as a KMS call through the
    vsock-proxy. Retryable like any unavailability, but answered 504 so a client can tell it
    from a busy or absent enclave.
    """

    status = 504
    default_message = "Enclave did not answer in time"


def error_body(status: int, message: str = "") -> dict[str, object]:
    return {"code": status, "message": message or DEFAULT_MESSAGES.get(status, "Error")}


def error_response(status: int, message: str = "", headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)
