"""REST API (v1) proxy events and a Lambda context, as API Gateway and Lambda provide them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from vault.api.handler import lambda_handler

REGION = "us-east-1"
STAGE = "v1"


class LambdaContext:
    function_name = "nitro-vault-api"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:nitro-vault-api"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/nitro-vault-api"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def rest_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """A proxy event as API Gateway (REST, ``/{proxy+}`` ``ANY``, stage ``v1``) sends it."""
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    if text is not None and base64_body:
        text = base64.b64encode(text.encode("utf-8", "surrogateescape")).decode()
    all_headers = {"Content-Type": "application/json", "Host": "api.test", **(headers or {})}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {name: [value] for name, value in all_headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": "req-ext",
            "requestTime": "01/Jan/2026:00:00:00 +0000",
            "path": f"/{STAGE}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": "api",
            "requestTimeEpoch": 1767225600000,
            "requestId": "req-1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "domainName": "api.test",
            "apiId": "api",
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def invoke(event: dict[str, Any]) -> ApiResponse:
    result = lambda_handler(event, LambdaContext())
    headers = {name: values[-1] for name, values in (result.get("multiValueHeaders") or {}).items()}
    body = result["body"]
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return ApiResponse(result["statusCode"], headers, body)
