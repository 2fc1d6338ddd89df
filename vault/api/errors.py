"""Every refusal the API makes: an HTTP status, a stable ``code`` and a message.

Error bodies keep upstream's ``statusCode`` and ``message`` keys (spec 1.2) so that
existing clients still read them, and add ``code``, which is what clients should match
on: messages may be reworded, codes do not change. Messages never quote request values.
"""

from __future__ import annotations

import enum
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types


class ErrorCode(enum.StrEnum):
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    VAULT_NOT_FOUND = "VaultNotFound"
    TRANSACTION_CANCELLED = "TransactionCancelled"
    UNSUPPORTED_MEDIA_TYPE = "UnsupportedMediaType"
    VALIDATION_ERROR = "ValidationError"
    INVALID_NEXT_TOKEN = "InvalidNextToken"  # noqa: S105 - an error code, not a credential
    STORAGE_ERROR = "StorageError"
    VAULT_CORRUPT = "VaultCorrupt"
    CONFIGURATION_ERROR = "ConfigurationError"
    INTERNAL_ERROR = "InternalError"
    KEY_GENERATION_FAILED = "KeyGenerationFailed"
    ENCLAVE_DECRYPT_FAILED = "EnclaveDecryptFailed"
    ENCLAVE_UNAVAILABLE = "EnclaveUnavailable"
    ENCLAVE_TIMEOUT = "EnclaveTimeout"
    KMS_TIMEOUT = "KmsTimeout"
    PARENT_UNREACHABLE = "ParentUnreachable"
    PARENT_TIMEOUT = "ParentTimeout"
    PARENT_ERROR = "ParentError"
    #: The API could not sign the decrypt's authorization (decision D16).
    AUTHORIZATION_FAILED = "AuthorizationFailed"
    #: The reveal policy does not let this caller receive these fields or expressions.
    REVEAL_NOT_ALLOWED = "RevealNotAllowed"
    #: The reveal policy does not let this caller rotate a vault's key.
    ROTATION_NOT_ALLOWED = "RotationNotAllowed"
    #: A rotation's answer did not carry the enclave's proof over exactly what was sent back.
    ROTATION_PROOF_INVALID = "RotationProofInvalid"
    #: The deployment does not index fields for search (``SEARCH_INDEX`` is off).
    SEARCH_NOT_ENABLED = "SearchNotEnabled"
    #: The reveal policy does not let this caller search this field.
    SEARCH_NOT_ALLOWED = "SearchNotAllowed"


class ApiError(Exception):
    """Raised anywhere below the routes; the app turns it into the error response."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: Extra body keys (for example the enclave's own error list); never request values.
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"statusCode": self.status, "code": self.code.value, "message": self.message, **self.details}

    def response(self) -> Response[dict[str, Any]]:
        return Response(
            status_code=self.status,
            content_type=content_types.APPLICATION_JSON,
            body=self.body(),
            headers=dict(self.headers),
        )


def vault_not_found() -> ApiError:
    return ApiError(404, ErrorCode.VAULT_NOT_FOUND, "Vault not found")


def validation_error(details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(422, ErrorCode.VALIDATION_ERROR, "Invalid request data", details=details)


def reveal_not_allowed(fields: list[str], expressions: list[str]) -> ApiError:
    """403 naming the refused field names and expression output names (never values or texts)."""
    return ApiError(
        403,
        ErrorCode.REVEAL_NOT_ALLOWED,
        "The reveal policy does not allow these fields or expressions for this caller",
        details={"fields": fields, "expressions": expressions},
    )


def search_not_allowed(field: str) -> ApiError:
    """403 naming the field the caller may not search (a schema name, never the value)."""
    return ApiError(
        403,
        ErrorCode.SEARCH_NOT_ALLOWED,
        "The reveal policy does not allow this caller to search this field",
        details={"fields": [field]},
    )


def transaction_cancelled() -> ApiError:
    return ApiError(409, ErrorCode.TRANSACTION_CANCELLED, "Transaction Cancelled")


def vault_changed() -> ApiError:
    """409: the vault changed between this request's read and its write; nothing was written."""
    message = "The vault changed during the request; nothing was written, retry"
    return ApiError(409, ErrorCode.TRANSACTION_CANCELLED, message)


def internal_error(code: ErrorCode = ErrorCode.INTERNAL_ERROR) -> ApiError:
    return ApiError(500, code, "Internal server error")
