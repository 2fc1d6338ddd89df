"""Lambda entry point behind API Gateway (REST API, proxy integration).

The resolver and the boto3 clients are built once per container; configuration is
read from the environment at the first request (see :mod:`vault.api.dependencies`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from vault.api.app import create_app
from vault.api.config import reveal_policy
from vault.api.dependencies import warn_no_reveal_policy
from vault.api.errors import ApiError, ErrorCode
from vault.api.headers import with_security_headers
from vault.api.observability import logger, metrics, tracer

app = create_app()

# Lambda sets the function's environment before the cold start: an invalid reveal policy
# stops the container here (ConfigError says what is wrong) before it answers anything.
# An environment handed over only after the import (the emulator's) is checked by
# get_service, at the first request.
if os.environ.get("TABLE_NAME") and reveal_policy(os.environ) is None:
    warn_no_reveal_policy()

#: Methods whose requests carry a body; the only body the API takes is JSON.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONTENT_TYPE = "content-type"


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _is_json(value: str) -> bool:
    media_type = _media_type(value)
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _normal_media_type(value: str) -> str:
    # Powertools takes only a media type starting with ``application/json``.
    _, separator, parameters = value.partition(";")
    return "application/json" + separator + parameters if value.strip() else value


def _accepts_body(event: dict[str, Any]) -> bool:
    """Whether the request's body may be routed; a JSON media type becomes ``application/json``.

    Powertools would parse form and multipart bodies itself and compares media types
    case-sensitively, so the check is made here, on both header maps. A request without
    ``Content-Type`` (or a blank one) goes on: Powertools reads its body as JSON.
    """
    if str(event.get("httpMethod") or "").upper() not in _BODY_METHODS:
        return True
    single: dict[str, Any] = event.get("headers") or {}
    multi: dict[str, Any] = event.get("multiValueHeaders") or {}
    values = [value for name, value in single.items() if name.lower() == _CONTENT_TYPE]
    values += [item for name, value in multi.items() if name.lower() == _CONTENT_TYPE for item in value or ()]
    if not all(isinstance(value, str) and (not value.strip() or _is_json(value)) for value in values):
        return False
    for name in [name for name in single if name.lower() == _CONTENT_TYPE]:
        single[name] = _normal_media_type(single[name])
    for name in [name for name in multi if name.lower() == _CONTENT_TYPE]:
        multi[name] = [_normal_media_type(value) for value in multi[name] or ()]
    return True


def _unsupported_media_type() -> dict[str, Any]:
    logger.info("Unsupported request content type")
    error = ApiError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Request bodies must be application/json")
    return {
        "statusCode": error.status,
        "body": json.dumps(error.body(), separators=(",", ":")),
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": ["application/json"]},
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _accepts_body(event):
        return with_security_headers(_unsupported_media_type())
    return with_security_headers(app.resolve(event, context))
