"""The vault table: reads, and the one ``TransactWriteItems`` call each request makes (spec 1.5, 1.6).

All writes of a request are collected in a :class:`WriteTransaction` and committed
together, so a vault and its audit record change together or not at all. Conditions
make concurrent requests safe: a vault is created only where none exists, changed or
deleted only where one exists (decision D6: no stub items), and an audit record never
overwrites another. A failed condition on the vault item means the vault is gone (404);
any other cancellation is upstream's 409 ``Transaction Cancelled``.

Attribute values use DynamoDB's low-level JSON shapes (``{"B": ...}``, ``{"S": ...}``).
Log lines name operations, attribute names and error codes, never values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vault.api.clients import aws_error_code
from vault.api.errors import ApiError, ErrorCode, transaction_cancelled, vault_not_found
from vault.api.observability import logger
from vault.infra.table import PARTITION_KEY, SORT_KEY, log_partition, vault_key

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]
#: DynamoDB's limit on actions in one TransactWriteItems call.
MAX_TRANSACTION_ACTIONS = 100


def storage_error() -> ApiError:
    return ApiError(500, ErrorCode.STORAGE_ERROR, "Unable to reach the vault store")


def _names(prefix: str, attributes: Sequence[str]) -> dict[str, str]:
    # Placeholders for every attribute name: field names may be DynamoDB reserved words.
    return {f"#{prefix}{index}": name for index, name in enumerate(attributes)}


@dataclass
class _Action:
    request: dict[str, Any]
    #: What a failed condition on this action means for the client.
    on_condition_failure: ApiError | None


@dataclass
class WriteTransaction:
    table_name: str
    actions: list[_Action] = field(default_factory=list)

    def put_vault(self, vault_id: str, attributes: Mapping[str, AttributeValue]) -> None:
        self.actions.append(
            _Action(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": {**vault_key(vault_id), **attributes},
                        "ConditionExpression": "attribute_not_exists(#pk) and attribute_not_exists(#sk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
                    }
                },
                # Two creates drawing the same 16 random bytes in the same second.
                on_condition_failure=None,
            )
        )

    def update_vault(
        self, vault_id: str, set_attributes: Mapping[str, AttributeValue], remove: Sequence[str] = ()
    ) -> None:
        """``SET #a0 = :a0, ... REMOVE #r0, ...`` on an existing vault (spec 1.6 format)."""
        set_names = _names("a", list(set_attributes))
        remove_names = _names("r", remove)
        clauses = []
        if set_names:
            clauses.append("SET " + ", ".join(f"{name} = :{name[1:]}" for name in set_names))
        if remove_names:
            clauses.append("REMOVE " + ", ".join(remove_names))
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": vault_key(vault_id),
            "UpdateExpression": " ".join(clauses),
            "ConditionExpression": "attribute_exists(#pk)",
            "ExpressionAttributeNames": {**set_names, **remove_names, "#pk": PARTITION_KEY},
        }
        if set_names:
            update["ExpressionAttributeValues"] = {
                f":{name[1:]}": set_attributes[attribute] for name, attribute in set_names.items()
            }
        self.actions.append(_Action({"Update": update}, on_condition_failure=vault_not_found()))

    def delete_vault(self, vault_id: str) -> None:
        self.actions.append(
            _Action(
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": vault_key(vault_id),
                        "ConditionExpression": "attribute_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    }
                },
                on_condition_failure=vault_not_found(),
            )
        )

    def put_audit(self, item: Item) -> None:
        self.actions.append(
            _Action(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": item,
                        # Two records of one vault in the same microsecond: refuse the
                        # second (409) rather than lose the first.
                        "ConditionExpression": "attribute_not_exists(#sk)",
                        "ExpressionAttributeNames": {"#sk": SORT_KEY},
                    }
                },
                on_condition_failure=None,
            )
        )


class VaultStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self.table_name = table_name

    def transaction(self) -> WriteTransaction:
        return WriteTransaction(self.table_name)

    def get_vault(self, vault_id: str, attributes: Sequence[str]) -> Item | None:
        """The vault item projected to ``attributes`` (unique names), or ``None`` if there is none."""
        projection = [PARTITION_KEY, *(name for name in attributes if name != PARTITION_KEY)]
        names = _names("a", projection)
        try:
            reply = self._client.get_item(
                TableName=self.table_name,
                Key=vault_key(vault_id),
                ProjectionExpression=", ".join(names),
                ExpressionAttributeNames=names,
                # A client that just wrote must read what it wrote.
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.error("GetItem failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        item: Item | None = reply.get("Item")
        return item

    def query_audit(
        self, vault_id: str, limit: int, after_sort_key: str | None
    ) -> tuple[list[Item], str | None]:
        """Up to ``limit`` LOG items, newest first, and the sort key to continue after (if any)."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": {"S": log_partition(vault_id)}},
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        if after_sort_key is not None:
            request["ExclusiveStartKey"] = {
                PARTITION_KEY: {"S": log_partition(vault_id)},
                SORT_KEY: {"S": after_sort_key},
            }
        try:
            reply = self._client.query(**request)
        except (ClientError, BotoCoreError) as exc:
            logger.error("Query failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        items: list[Item] = reply.get("Items", [])
        last = reply.get("LastEvaluatedKey")
        return items, (last[SORT_KEY]["S"] if last else None)

    def commit(self, transaction: WriteTransaction) -> None:
        """Send every action in one ``TransactWriteItems`` call."""
        actions = transaction.actions
        if not actions:
            return
        if len(actions) > MAX_TRANSACTION_ACTIONS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ACTIONS} actions")
        try:
            self._client.transact_write_items(TransactItems=[action.request for action in actions])
        except ClientError as exc:
            if aws_error_code(exc) != "TransactionCanceledException":
                logger.error("TransactWriteItems failed", extra={"error_code": aws_error_code(exc)})
                raise storage_error() from exc
            reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
            logger.warning("Transaction cancelled", extra={"cancellation_reasons": reasons})
            for action, reason in zip(actions, reasons, strict=False):
                if reason == "ConditionalCheckFailed" and action.on_condition_failure is not None:
                    raise action.on_condition_failure from exc
            raise transaction_cancelled() from exc
        except BotoCoreError as exc:
            logger.error("TransactWriteItems failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
