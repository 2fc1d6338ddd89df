"""The vault table's definition, shared by the CDK app and the emulator backends."""

from __future__ import annotations

from typing import Any

from vault.common.blind_index import SEARCHABLE_FIELDS

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expire_at"
KEY_SEPARATOR = "##"
VAULT_PREFIX = "VAULT"
LOG_PREFIX = "LOG"
DEFAULT_VERSION = "v0"
#: Partition of deployment-wide configuration items (never a vault: no ``VAULT`` prefix).
CONFIG_PREFIX = "CONFIG"
#: Fields with a blind-index token, each with its own index.
INDEXED_FIELDS = SEARCHABLE_FIELDS
#: Vault item attributes start with "_"; field names never do.
INDEX_ATTRIBUTE_PREFIX = "_ix_"
INDEX_NAME_PREFIX = "ix_"


def index_attribute(field: str) -> str:
    """The vault item attribute holding ``field``'s token: the key of its index."""
    return f"{INDEX_ATTRIBUTE_PREFIX}{field}"


def index_name(field: str) -> str:
    """The global secondary index on ``field``'s token (keys only: it answers vault ids)."""
    return f"{INDEX_NAME_PREFIX}{field}"


def global_secondary_indexes() -> list[dict[str, Any]]:
    """The token indexes, in boto3 ``create_table`` form (the CDK app builds the same)."""
    return [
        {
            "IndexName": index_name(field),
            "KeySchema": [{"AttributeName": index_attribute(field), "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
        for field in INDEXED_FIELDS
    ]


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
            *({"AttributeName": index_attribute(field), "AttributeType": "S"} for field in INDEXED_FIELDS),
        ],
        "GlobalSecondaryIndexes": global_secondary_indexes(),
        "BillingMode": "PAY_PER_REQUEST",
    }


def vault_key(vault_id: str) -> dict[str, dict[str, str]]:
    return {
        PARTITION_KEY: {"S": f"{VAULT_PREFIX}{KEY_SEPARATOR}{vault_id}"},
        SORT_KEY: {"S": DEFAULT_VERSION},
    }


def log_partition(vault_id: str) -> str:
    return f"{LOG_PREFIX}{KEY_SEPARATOR}{vault_id}"


def config_key(name: str) -> dict[str, dict[str, str]]:
    """The key of the configuration item ``name`` (for example the blind-index key pair)."""
    return {
        PARTITION_KEY: {"S": f"{CONFIG_PREFIX}{KEY_SEPARATOR}{name}"},
        SORT_KEY: {"S": DEFAULT_VERSION},
    }


def vault_id_of(partition: str) -> str | None:
    """The vault id in a vault item's partition key, or ``None`` for any other item."""
    prefix = f"{VAULT_PREFIX}{KEY_SEPARATOR}"
    return partition[len(prefix) :] if partition.startswith(prefix) else None
