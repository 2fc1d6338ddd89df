"""The light transaction backups of the moto backend (made for the end-to-end benchmark's
slowest DynamoDB stage) keep moto's all-or-nothing semantics."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item

from emulator.aws.backends import AwsBackend, BackendConfig, moto_transactions, start_backend
from emulator.aws.backends.moto_transactions import install
from vault.infra.table import PARTITION_KEY, SORT_KEY, create_table_kwargs

TABLE = "light-backups"


def _key(pk: str, sk: str = "v0") -> dict[str, dict[str, str]]:
    return {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}}


def _item(pk: str, value: str, sk: str = "v0") -> dict[str, dict[str, str]]:
    return {**_key(pk, sk), "value": {"S": value}}


def _scan(backend: DynamoDBBackend, table: str = TABLE) -> list[dict[str, Any]]:
    items = [item.to_json()["Attributes"] for item in backend.get_table(table).all_items()]
    return sorted(items, key=lambda item: (item[PARTITION_KEY]["S"], item[SORT_KEY]["S"]))


@pytest.fixture
def dynamodb() -> Iterator[DynamoDBBackend]:
    install()
    backend = DynamoDBBackend("us-east-1", "123456789012")
    kwargs = create_table_kwargs(TABLE)
    backend.create_table(
        TABLE,
        schema=kwargs["KeySchema"],
        throughput=None,
        attr=kwargs["AttributeDefinitions"],
        global_indexes=None,
        indexes=None,
        streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        billing_mode="PAY_PER_REQUEST",
        sse_specification=None,
        tags=[],
        deletion_protection_enabled=False,
        warm_throughput=None,
    )
    for index in range(50):
        backend.put_item(TABLE, _item(f"LOG##{index % 5}", str(index), sk=f"{index:04d}"))
    backend.put_item(TABLE, _item("VAULT##keep", "original"))
    backend.put_item(TABLE, _item("VAULT##gone", "original"))
    yield backend


def test_a_cancelled_transaction_leaves_the_table_as_it_was(dynamodb: DynamoDBBackend) -> None:
    before = _scan(dynamodb)
    records_before = len(dynamodb.get_table(TABLE).stream_shard.items)  # type: ignore[union-attr]
    with pytest.raises(Exception, match="ConditionalCheckFailed"):
        dynamodb.transact_write_items(
            [
                {"Put": {"TableName": TABLE, "Item": _item("VAULT##new", "1")}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": _key("VAULT##keep"),
                        "UpdateExpression": "SET #v = :v",
                        "ExpressionAttributeNames": {"#v": "value"},
                        "ExpressionAttributeValues": {":v": {"S": "changed in place"}},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": _key("VAULT##gone")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": _key("VAULT##absent"),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert _scan(dynamodb) == before
    table = dynamodb.get_table(TABLE)
    assert table.stream_shard is not None and table.stream_shard.table is table
    assert len(table.stream_shard.items) == records_before


def test_a_committed_transaction_applies_every_item(dynamodb: DynamoDBBackend) -> None:
    dynamodb.transact_write_items(
        [
            {"Put": {"TableName": TABLE, "Item": _item("VAULT##new", "1")}},
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": _key("VAULT##keep"),
                    "UpdateExpression": "SET #v = :v",
                    "ExpressionAttributeNames": {"#v": "value"},
                    "ExpressionAttributeValues": {":v": {"S": "changed"}},
                }
            },
            {"Delete": {"TableName": TABLE, "Key": _key("VAULT##gone")}},
        ]
    )
    values = {item[PARTITION_KEY]["S"]: item["value"]["S"] for item in _scan(dynamodb)}
    assert values["VAULT##new"] == "1" and values["VAULT##keep"] == "changed"
    assert "VAULT##gone" not in values


def test_only_the_named_items_are_copied(dynamodb: DynamoDBBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    copies: list[Item] = []
    original = Item.__deepcopy__

    def counting(self: Item, memo: dict[int, Any]) -> Item:
        copies.append(self)
        return original(self, memo)

    monkeypatch.setattr(Item, "__deepcopy__", counting)
    dynamodb.transact_write_items([{"Put": {"TableName": TABLE, "Item": _item("VAULT##keep", "replaced")}}])
    # The existing item once for the backup, nothing else of the 52 in the table.
    assert len(copies) == 1


def test_a_transaction_of_many_items_backs_each_up_once(
    dynamodb: DynamoDBBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto asks for a table copy per item; one backup serves the whole transaction."""
    backups: list[int] = []
    original = moto_transactions._backup

    def counting(table: Any, keys: Any) -> Any:
        backups.append(len(keys))
        return original(table, keys)

    monkeypatch.setattr(moto_transactions, "_backup", counting)
    updates = [
        {
            "Update": {
                "TableName": TABLE,
                "Key": _key(f"LOG##{index % 5}", f"{index:04d}"),
                "UpdateExpression": "SET #v = :v",
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": {":v": {"S": "completed"}},
            }
        }
        for index in range(20)
    ]
    dynamodb.transact_write_items(updates)
    assert backups == [20], "one backup of the 20 named items, not one per item of the transaction"
    # And a cancelled one of the same size still restores every item.
    before = _scan(dynamodb)
    failing = {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": _key("VAULT##absent"),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    changed = [
        {"Update": {**update["Update"], "ExpressionAttributeValues": {":v": {"S": "again"}}}}
        for update in updates
    ]
    with pytest.raises(Exception, match="ConditionalCheckFailed"):
        dynamodb.transact_write_items([*changed, failing])
    assert _scan(dynamodb) == before


def test_deep_copies_outside_transactions_are_still_full(dynamodb: DynamoDBBackend) -> None:
    table = dynamodb.get_table(TABLE)
    clone = copy.deepcopy(table)
    dynamodb.put_item(TABLE, _item("VAULT##keep", "after the copy"))
    assert clone is not table and clone.items is not table.items
    kept = [i for i in clone.all_items() if i.hash_key.value == "VAULT##keep"]
    assert kept[0].to_json()["Attributes"]["value"] == {"S": "original"}
    assert clone.stream_shard is not None and clone.stream_shard.table is clone


@pytest.fixture
def served(tmp_path: Path) -> Iterator[AwsBackend]:
    with start_backend(BackendConfig(kind="moto", state_dir=tmp_path)) as started:
        yield started


def test_the_moto_backend_cancels_atomically_over_http(served: AwsBackend) -> None:
    client = served.client("dynamodb")
    client.create_table(**create_table_kwargs(TABLE))
    client.put_item(TableName=TABLE, Item=_item("VAULT##a", "1"))
    with pytest.raises(ClientError) as failure:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item("VAULT##b", "2")}},
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": _item("VAULT##a", "2"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
    assert failure.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in client.get_item(TableName=TABLE, Key=_key("VAULT##b"))
    assert client.get_item(TableName=TABLE, Key=_key("VAULT##a"))["Item"]["value"] == {"S": "1"}


def test_backups_are_not_kept_alive_by_motos_registry(dynamodb: DynamoDBBackend) -> None:
    from moto.dynamodb.models.table import Table

    tracked = len(Table.instances_tracked)  # type: ignore[attr-defined]
    for index in range(5):
        dynamodb.transact_write_items([{"Put": {"TableName": TABLE, "Item": _item(f"LOG##x{index}", "1")}}])
    assert len(Table.instances_tracked) == tracked  # type: ignore[attr-defined]
