"""Parsing and validation of a ``POST /decrypt`` body (spec 3.3).

Three outcomes, in this order: bytes that are not JSON are *malformed* (400), JSON of
the wrong shape (missing key, ``null`` or a number where a string belongs) is
*unprocessable* (422), and a well-shaped request that breaks a limit is *invalid*
(400 with the rules it broke). Lengths count characters, as upstream does.
"""

from __future__ import annotations

from pydantic import ValidationError

from vault.common.messages import BatchDecryptRequest, DecryptRequest
from vault.parent.errors import MalformedJson, UnprocessableRequest, ValidationFailed

MAX_VAULT_ID_LENGTH = 256
MAX_REGION_LENGTH = 64
MAX_SUITE_ID_LENGTH = 1024
MAX_ENCRYPTED_KEY_LENGTH = 8192
MAX_ENCODING_LENGTH = 32
MAX_FIELDS_COUNT = 100
MAX_EXPRESSIONS_COUNT = 100

# A 422 message lists a few shape errors; a hostile body can produce thousands.
_MAX_REPORTED_ERRORS = 5
_MAX_LOCATION_PART = 64

_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")


def is_valid_region(region: str) -> bool:
    """``xx-name[-name...]-N``: 2 lowercase letters, lowercase words, then digits (ASCII only)."""
    if not 1 <= len(region) <= MAX_REGION_LENGTH:
        return False
    parts = region.split("-")
    if len(parts) < 3:
        return False
    first, middle, last = parts[0], parts[1:-1], parts[-1]
    if len(first) != 2 or not set(first) <= _LOWER:
        return False
    if any(not part or not set(part) <= _LOWER for part in middle):
        return False
    return bool(last) and set(last) <= _DIGITS


def _length_rule(name: str, value: str, low: int, high: int) -> str | None:
    if low <= len(value) <= high:
        return None
    return f"{name} must be between {low} and {high} characters long"


def validation_errors(request: DecryptRequest) -> list[str]:
    """Every limit ``request`` breaks, as texts that name the field and the rule only."""
    problems = [
        _length_rule("vault_id", request.vault_id, 1, MAX_VAULT_ID_LENGTH),
        _length_rule("suite_id", request.suite_id, 1, MAX_SUITE_ID_LENGTH),
        _length_rule("encrypted_private_key", request.encrypted_private_key, 1, MAX_ENCRYPTED_KEY_LENGTH),
    ]
    if not is_valid_region(request.region):
        problems.append(
            f"region must be a region name such as us-east-1 (at most {MAX_REGION_LENGTH} characters)"
        )
    if len(request.fields) > MAX_FIELDS_COUNT:
        problems.append(f"fields must have at most {MAX_FIELDS_COUNT} entries")
    if request.expressions is not None and len(request.expressions) > MAX_EXPRESSIONS_COUNT:
        problems.append(f"expressions must have at most {MAX_EXPRESSIONS_COUNT} entries")
    if request.encoding is not None and len(request.encoding) > MAX_ENCODING_LENGTH:
        problems.append(f"encoding must be at most {MAX_ENCODING_LENGTH} characters long")
    return [p for p in problems if p is not None]


def _describe_shape_errors(exc: ValidationError) -> str:
    # pydantic's ``msg`` never contains the input; the location holds key names only.
    described = []
    for error in exc.errors(include_url=False, include_input=False)[:_MAX_REPORTED_ERRORS]:
        location = ".".join(str(part)[:_MAX_LOCATION_PART] for part in error["loc"]) or "body"
        described.append(f"{location}: {error['msg']}")
    if exc.error_count() > _MAX_REPORTED_ERRORS:
        described.append(f"and {exc.error_count() - _MAX_REPORTED_ERRORS} more")
    return "; ".join(described)


def parse_decrypt_request(body: bytes) -> DecryptRequest:
    """Parse and validate a decrypt body; raise the matching :class:`ParentError`."""
    try:
        request = DecryptRequest.model_validate_json(body)
    except ValidationError as exc:
        invalid_json = [e for e in exc.errors(include_input=False) if e["type"] == "json_invalid"]
        if invalid_json:
            raise MalformedJson(str(invalid_json[0]["msg"])) from None
        raise UnprocessableRequest(_describe_shape_errors(exc)) from None
    problems = validation_errors(request)
    if problems:
        raise ValidationFailed("; ".join(problems))
    return request


def parse_batch_request(body: bytes) -> BatchDecryptRequest:
    """Parse and validate a ``POST /decrypt/batch`` body: 1 to ``MAX_BATCH`` decrypt requests.

    Each request is held to the same limits as ``POST /decrypt``; the problems of every
    request are reported, each prefixed with its position.
    """
    try:
        batch = BatchDecryptRequest.model_validate_json(body)
    except ValidationError as exc:
        invalid_json = [e for e in exc.errors(include_input=False) if e["type"] == "json_invalid"]
        if invalid_json:
            raise MalformedJson(str(invalid_json[0]["msg"])) from None
        raise UnprocessableRequest(_describe_shape_errors(exc)) from None
    problems = [
        f"requests.{index}.{problem}"
        for index, request in enumerate(batch.requests)
        for problem in validation_errors(request)
    ]
    if problems:
        raise ValidationFailed("; ".join(problems[:_MAX_REPORTED_ERRORS]))
    return batch
