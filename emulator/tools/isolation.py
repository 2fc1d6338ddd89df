"""Per-test isolation: empty the vault table of vaults and audit records, keep everything else.

A test suite that starts the emulator once (the ``vault_emulator`` fixture) can give each
test an empty vault table with :func:`clear_vault_data` (the plugin's ``vault_clean``
fixture) instead of a new emulator: the keys, the PKI, the enclave and the table itself
stay, and so do deployment-wide items (the blind-index configuration), so tokens written
after a clear still match what the running API computes. Only items whose partition key
is a vault's or a vault's audit log are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from vault.infra.table import KEY_SEPARATOR, LOG_PREFIX, PARTITION_KEY, SORT_KEY, VAULT_PREFIX

#: BatchWriteItem's limit per call.
_BATCH = 25
#: Bounds on one clear, so a runaway table cannot hang a test run.
_MAX_PAGES = 1000
_MAX_RETRIES = 20


@dataclass(frozen=True)
class Cleared:
    deleted: int
    seconds: float


class VaultTable:
    """The running emulator's vault table, reached on the backend with its test credentials."""

    def __init__(self, facts: Mapping[str, Any]) -> None:
        self.table_name = str(facts["table_name"])
        self._client: Any = boto3.client(
            "dynamodb",
            endpoint_url=str(facts["dynamodb_endpoint"]),
            region_name=str(facts["region"]),
            aws_access_key_id=str(facts["backend_access_key_id"]),
            aws_secret_access_key=str(facts["backend_secret_access_key"]),
        )

    def clear(self) -> Cleared:
        """Delete every vault item and audit record; return how many, and how long it took."""
        began = time.perf_counter()
        keys = self._vault_keys()
        for start in range(0, len(keys), _BATCH):
            self._delete([{"DeleteRequest": {"Key": key}} for key in keys[start : start + _BATCH]])
        return Cleared(deleted=len(keys), seconds=time.perf_counter() - began)

    def _vault_keys(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "ProjectionExpression": "#pk, #sk",
            "FilterExpression": "begins_with(#pk, :vault) OR begins_with(#pk, :log)",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            "ExpressionAttributeValues": {
                ":vault": {"S": VAULT_PREFIX + KEY_SEPARATOR},
                ":log": {"S": LOG_PREFIX + KEY_SEPARATOR},
            },
            "ConsistentRead": True,
        }
        keys: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page = self._client.scan(**kwargs)
            keys.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return keys
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        raise RuntimeError(f"table {self.table_name} has more items than one clear scans")

    def _delete(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.table_name: requests}
        for attempt in range(_MAX_RETRIES):
            answer = self._client.batch_write_item(RequestItems=pending)
            pending = answer.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.5, 0.01 * 2**attempt))
        raise RuntimeError(f"table {self.table_name}: deletes still unprocessed after {_MAX_RETRIES} tries")


def clear_vault_data(facts: Mapping[str, Any]) -> Cleared:
    """Empty the running emulator's vault table of vaults and audit records (see the module)."""
    return VaultTable(facts).clear()
