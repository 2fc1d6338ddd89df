"""The parent's error variants and their single JSON shape (spec 3.3 error table, spec 9)."""

from __future__ import annotations

import json

import pytest

from vault.parent.errors import (
    CredentialsUnavailable,
    EnclaveNotFound,
    EnclaveTimeout,
    EnclaveUnavailable,
    MalformedJson,
    ParentError,
    UnprocessableRequest,
    UnsupportedMediaType,
    ValidationFailed,
    error_body,
    error_response,
)

VARIANTS = [
    (ParentError, 500),
    (MalformedJson, 400),
    (ValidationFailed, 400),
    (UnsupportedMediaType, 415),
    (UnprocessableRequest, 422),
    (EnclaveNotFound, 404),
    (CredentialsUnavailable, 500),
    (EnclaveUnavailable, 503),
    (EnclaveTimeout, 504),
]


@pytest.mark.parametrize(("variant", "status"), VARIANTS)
@pytest.mark.parametrize("message", ["", "bad input"])
def test_every_variant_has_its_status_and_a_non_empty_message(
    variant: type[ParentError], status: int, message: str
) -> None:
    error = variant(message)
    assert error.status == status
    assert error.message == (message or variant.default_message)
    assert error.message
    response = error_response(error.status, error.message)
    body = json.loads(bytes(response.body))
    assert response.status_code == status
    assert body == {"code": status, "message": error.message}


def test_validation_error_passes_its_message_through_and_defaults_when_empty() -> None:
    assert ValidationFailed("vault_id must be between 1 and 256 characters long").message.startswith(
        "vault_id"
    )
    assert ValidationFailed("").message == "Validation error"


def test_enclave_not_found_body() -> None:
    error = EnclaveNotFound()
    assert error_body(error.status, error.message) == {"code": 404, "message": "No enclaves found"}


def test_credential_failures_do_not_tell_the_client_why() -> None:
    assert error_body(500, CredentialsUnavailable().message) == {
        "code": 500,
        "message": "Internal Server Error",
    }


@pytest.mark.parametrize("status", [400, 404, 405, 408, 413, 415, 422, 500, 503, 504, 418])
def test_an_empty_message_gets_a_default(status: int) -> None:
    body = error_body(status)
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
