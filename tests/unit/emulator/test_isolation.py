"""Per-test isolation: a clear empties vaults and audit records on a real moto DynamoDB, nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from emulator.tools.enclave_fixtures import moto_server
from emulator.tools.isolation import VaultTable, clear_vault_data
from vault.infra.table import create_table_kwargs, log_partition, vault_key

TABLE = "nitro-vault"


@pytest.fixture(scope="module")
def facts() -> Iterator[dict[str, Any]]:
    with moto_server() as url:
        values = {
            "table_name": TABLE,
            "dynamodb_endpoint": url,
            "region": "us-east-1",
            "backend_access_key_id": "123456789012",
            "backend_secret_access_key": "test",
        }
        client = _client(values)
        client.create_table(**create_table_kwargs(TABLE))
        yield values


def _client(facts: dict[str, Any]) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=facts["dynamodb_endpoint"],
        region_name=facts["region"],
        aws_access_key_id=facts["backend_access_key_id"],
        aws_secret_access_key=facts["backend_secret_access_key"],
    )


def _keys(client: Any) -> set[tuple[str, str]]:
    items = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {(item["pk"]["S"], item["sk"]["S"]) for item in items}


def test_a_clear_deletes_vaults_and_audit_records_and_keeps_configuration(facts: dict[str, Any]) -> None:
    client = _client(facts)
    for number in range(30):
        vault_id = f"v_{number:027d}"
        client.put_item(TableName=TABLE, Item={**vault_key(vault_id), "_pk": {"B": b"k"}})
        client.put_item(
            TableName=TABLE, Item={"pk": {"S": log_partition(vault_id)}, "sk": {"S": "1700000000000000"}}
        )
    config = {"pk": {"S": "CONFIG##blind-index"}, "sk": {"S": "v0"}}
    client.put_item(TableName=TABLE, Item=config)
    # A key that merely contains a prefix elsewhere is not a vault's.
    lookalike = {"pk": {"S": "XVAULT##v_1"}, "sk": {"S": "v0"}}
    client.put_item(TableName=TABLE, Item=lookalike)

    cleared = clear_vault_data(facts)

    assert cleared.deleted == 60
    assert _keys(client) == {("CONFIG##blind-index", "v0"), ("XVAULT##v_1", "v0")}


def test_a_clear_of_an_empty_table_deletes_nothing(facts: dict[str, Any]) -> None:
    table = VaultTable(facts)
    table.clear()
    again = table.clear()
    assert again.deleted == 0
