"""Identity canary: try to decrypt a vault's key from outside any enclave; it must fail.

The function finds one vault's encrypted private key in the table and calls KMS Decrypt
with ``DryRun``. ``DryRunOperationException`` means the call *would* have succeeded:
the key policy let a principal outside an attested enclave decrypt, and the
``DecryptSuccess`` metric becomes 1, which raises the alarm. Any other answer (access
denied) is the expected 0. The metric is written in CloudWatch embedded metric format.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

_CONFIG = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 5, "mode": "standard"})
_dynamodb = boto3.client("dynamodb", config=_CONFIG)
_kms = boto3.client("kms", config=_CONFIG)


def _find_encrypted_key(table: str) -> tuple[str, bytes] | None:
    paginator = _dynamodb.get_paginator("scan")
    pages = paginator.paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :vault)",
        ExpressionAttributeValues={":vault": {"S": "VAULT##"}},
        ProjectionExpression="#id, #sk",
        ExpressionAttributeNames={"#id": "_id", "#sk": "_sk"},
        PaginationConfig={"PageSize": 10},
    )
    # A page with no match does not end the search: filtered scans return empty pages.
    for page in pages:
        for item in page.get("Items", []):
            vault_id = item.get("_id", {}).get("S")
            blob = item.get("_sk", {}).get("B")
            if vault_id and blob:
                return vault_id, bytes(blob)
    return None


def _emit(service: str, success: int, tested: int) -> None:
    print(
        json.dumps(
            {
                "_aws": {
                    "Timestamp": int(time.time() * 1000),
                    "CloudWatchMetrics": [
                        {
                            "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "NitroVault"),
                            "Dimensions": [["service"]],
                            "Metrics": [
                                {"Name": "DecryptSuccess", "Unit": "Count"},
                                {"Name": "DecryptTested", "Unit": "Count"},
                            ],
                        }
                    ],
                },
                "service": service,
                "DecryptSuccess": success,
                "DecryptTested": tested,
            }
        )
    )


def handler(_event: object, _context: object) -> dict[str, Any]:
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "canary")
    try:
        found = _find_encrypted_key(os.environ["TABLE_NAME"])
    except (ClientError, BotoCoreError):
        found = None
    if found is None:
        _emit(service, 0, 0)
        return {"tested": False}
    vault_id, blob = found
    try:
        # The same request the enclave makes, minus the attestation document (decision D10).
        _kms.decrypt(
            CiphertextBlob=blob,
            EncryptionContext={os.environ.get("ENCRYPTION_CONTEXT_KEY", "vault_id"): vault_id},
            DryRun=True,
        )
        success = 1
    except ClientError as exc:
        success = 1 if exc.response.get("Error", {}).get("Code") == "DryRunOperationException" else 0
    _emit(service, success, 1)
    return {"tested": True, "decrypt_success": success}
