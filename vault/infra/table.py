"""The vault table's definition, shared by the CDK app and the emulator backends."""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expire_at"
KEY_SEPARATOR = "##"
VAULT_PREFIX = "VAULT"
LOG_PREFIX = "LOG"
DEFAULT_VERSION = "v0"


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for boto3 ``create_table`` that match the deployed table."""
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
            {"AttributeName": SORT_KEY, "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


def vault_key(vault_id: str) -> dict[str, dict[str, str]]:
    return {
        PARTITION_KEY: {"S": f"{VAULT_PREFIX}{KEY_SEPARATOR}{vault_id}"},
        SORT_KEY: {"S": DEFAULT_VERSION},
    }


def log_partition(vault_id: str) -> str:
    return f"{LOG_PREFIX}{KEY_SEPARATOR}{vault_id}"
