"""Lambda entry point behind API Gateway (REST API, proxy integration).

The resolver and the boto3 clients are built once per container; configuration is
read from the environment at the first request (see :mod:`vault.api.dependencies`).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from vault.api.app import create_app
from vault.api.headers import with_security_headers
from vault.api.observability import logger, metrics, tracer

app = create_app()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return with_security_headers(app.resolve(event, context))
