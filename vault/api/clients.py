"""boto3 clients, created once per Lambda container and reused by every invocation.

Timeouts and retries are chosen so that a failing dependency ends a request well
within the 10 s API Gateway integration timeout. Upstream's 15 DynamoDB attempts could
hold a request for 30 s and more against an unreachable endpoint; three attempts of at
most 1 s connect + 1 s read each (with DynamoDB's 25 ms retry backoff) stay near 6 s.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

DYNAMODB_CONFIG = Config(
    connect_timeout=1.0,
    read_timeout=1.0,
    retries={"total_max_attempts": 3, "mode": "standard"},
    tcp_keepalive=True,
)
# Key pair generation takes longer than a DynamoDB call; two attempts of at most
# 1 s + 3 s keep create and update inside the integration timeout.
KMS_CONFIG = Config(
    connect_timeout=1.0,
    read_timeout=3.0,
    retries={"total_max_attempts": 2, "mode": "standard"},
    tcp_keepalive=True,
)


@functools.cache
def dynamodb_client(region: str, endpoint_url: str | None = None) -> Any:
    return boto3.session.Session().client(
        "dynamodb", region_name=region, endpoint_url=endpoint_url, config=DYNAMODB_CONFIG
    )


@functools.cache
def kms_client(region: str, endpoint_url: str | None = None) -> Any:
    return boto3.session.Session().client(
        "kms", region_name=region, endpoint_url=endpoint_url, config=KMS_CONFIG
    )


def aws_error_code(exc: Exception) -> str:
    """The AWS error code of a failed call (``AccessDeniedException``...), or the exception type."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
