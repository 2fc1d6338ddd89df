"""The Powertools resolver: routes, OpenAPI metadata, Swagger UI and error rendering.

Every failure leaves as a JSON body ``{"statusCode", "code", "message"}`` (see
:mod:`vault.api.errors`); nothing escapes to API Gateway's bare 502. Error log lines
carry the error code, the failing field names and rule names, and exception types
with code locations, never exception texts, which can quote input values (D9).

Swagger UI is served without ``swagger_base_url``, so Powertools inlines the
swagger-ui script and stylesheet it ships: the page works with no internet access.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import License

from vault.api.body import parse_json_body
from vault.api.config import ConfigError
from vault.api.errors import ApiError, ErrorCode, internal_error, validation_error
from vault.api.observability import logger
from vault.api.routes import PREFIX, router
from vault.api.validation import Problem, body_shape, describe, describe_all

TITLE = "Nitro Vault API"
VERSION = "0.1.0"
SUMMARY = "API to securely store PII/PHI data"
DESCRIPTION = "This API implements CRUD operations for the vault application"
SWAGGER_PATH = "/swagger"
#: Innermost frames logged for an unexpected error.
_STACK_FRAMES = 12


def _stack(exc: BaseException) -> list[str]:
    frames = traceback.extract_tb(exc.__traceback__)[-_STACK_FRAMES:]
    return [f"{frame.filename}:{frame.lineno}:{frame.name}" for frame in frames]


def _on_api_error(error: ApiError) -> Response[dict[str, Any]]:
    logger.info("Request refused", extra={"status": error.status, "code": error.code.value})
    return error.response()


def _refused(problems: list[Problem]) -> Response[dict[str, Any]]:
    # The log keeps location and rule; the messages are for the client.
    logged = [{"loc": problem.loc, "type": problem.type} for problem in problems]
    logger.info("Request validation failed", extra={"validation_errors": logged})
    return validation_error(details={"errors": [problem.as_dict() for problem in problems]}).response()


def _validation_handler(app: APIGatewayRestResolver) -> Callable[[RequestValidationError], Response[Any]]:
    def on_validation_error(error: RequestValidationError) -> Response[dict[str, Any]]:
        # Powertools' error dicts carry the offending input; describe_all keeps location
        # and rule and writes a message that quotes no value.
        event = app.current_event
        text = error.body if isinstance(error.body, str) else None
        return _refused(describe_all(error.errors(), body_shape(event.http_method, event.path), text))

    return on_validation_error


def _on_undecodable_body(error: UnicodeDecodeError) -> Response[dict[str, Any]]:
    return _refused([describe({"loc": ("body",), "type": "utf8_invalid"})])


def _on_unsupported_media_type(error: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
    logger.info("Unsupported request content type")
    return ApiError(
        415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Request bodies must be application/json"
    ).response()


def _on_config_error(error: ConfigError) -> Response[dict[str, Any]]:
    # Configuration messages name variables, never their values.
    logger.error("Configuration error", extra={"reason": str(error)})
    return internal_error(ErrorCode.CONFIGURATION_ERROR).response()


def _on_unexpected(error: Exception) -> Response[dict[str, Any]]:
    logger.error("Unhandled error", extra={"error_type": type(error).__name__, "stack": _stack(error)})
    return internal_error().response()


def _on_not_found(error: NotFoundError) -> Response[dict[str, Any]]:
    return ApiError(404, ErrorCode.NOT_FOUND, "Not found").response()


def create_app() -> APIGatewayRestResolver:
    # debug=False: Powertools' debug mode prints whole events (request bodies) to stdout.
    # The body parser refuses over-deep or over-long JSON with a 422 (see vault.api.body).
    app = APIGatewayRestResolver(enable_validation=True, debug=False, json_body_deserializer=parse_json_body)
    app.include_router(router, prefix=PREFIX)
    app.exception_handler(ApiError)(_on_api_error)
    app.exception_handler(RequestValidationError)(_validation_handler(app))
    app.exception_handler(UnicodeDecodeError)(_on_undecodable_body)
    app.exception_handler(RequestUnsupportedContentType)(_on_unsupported_media_type)
    app.exception_handler(ConfigError)(_on_config_error)
    app.exception_handler(Exception)(_on_unexpected)
    app.not_found(_on_not_found)
    app.configure_openapi(
        title=TITLE,
        version=VERSION,
        summary=SUMMARY,
        description=DESCRIPTION,
        license_info=License(name="MIT-0", identifier="MIT-0"),
    )
    app.enable_swagger(path=SWAGGER_PATH)
    return app
