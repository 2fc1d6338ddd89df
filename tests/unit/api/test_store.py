"""The store's DynamoDB requests and error mapping (spec 1.5, 1.6), against a recording stub."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from vault.api.errors import ApiError
from vault.api.store import MAX_TRANSACTION_ACTIONS, VaultStore


class RecordingClient:
    def __init__(self, error: Exception | None = None, reply: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error = error
        self.reply = reply or {}

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((operation, kwargs))
            if self.error is not None:
                raise self.error
            return self.reply

        return call


def _client_error(code: str, reasons: list[str] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": "value 123456789 refused"}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
    return ClientError(response, "TransactWriteItems")


def test_update_expression_format() -> None:
    client = RecordingClient()
    store = VaultStore(client, "table")
    txn = store.transaction()
    txn.update_vault("v_1", {"state": {"B": b"x"}, "_mt": {"N": "7"}}, remove=["name", "ssn4"])
    store.commit(txn)
    ((operation, kwargs),) = client.calls
    assert operation == "transact_write_items"
    ((action),) = kwargs["TransactItems"]
    assert action["Update"] == {
        "TableName": "table",
        "Key": {"pk": {"S": "VAULT##v_1"}, "sk": {"S": "v0"}},
        "UpdateExpression": "SET #a0 = :a0, #a1 = :a1 REMOVE #r0, #r1",
        "ConditionExpression": "attribute_exists(#pk)",
        "ExpressionAttributeNames": {"#a0": "state", "#a1": "_mt", "#r0": "name", "#r1": "ssn4", "#pk": "pk"},
        "ExpressionAttributeValues": {":a0": {"B": b"x"}, ":a1": {"N": "7"}},
    }


def test_one_transaction_per_commit_with_conditions() -> None:
    client = RecordingClient()
    store = VaultStore(client, "table")
    txn = store.transaction()
    txn.put_vault("v_1", {"_id": {"S": "v_1"}})
    txn.put_audit({"pk": {"S": "LOG##v_1"}, "sk": {"S": "1"}})
    txn.delete_vault("v_2")
    store.commit(txn)
    ((_, kwargs),) = client.calls
    put, audit, delete = kwargs["TransactItems"]
    assert put["Put"]["Item"] == {"pk": {"S": "VAULT##v_1"}, "sk": {"S": "v0"}, "_id": {"S": "v_1"}}
    assert put["Put"]["ConditionExpression"] == "attribute_not_exists(#pk) and attribute_not_exists(#sk)"
    assert audit["Put"]["ConditionExpression"] == "attribute_not_exists(#sk)"
    assert delete["Delete"]["ConditionExpression"] == "attribute_exists(#pk)"


def test_empty_transaction_makes_no_call_and_oversized_is_refused() -> None:
    client = RecordingClient()
    store = VaultStore(client, "table")
    store.commit(store.transaction())
    assert client.calls == []
    txn = store.transaction()
    for index in range(MAX_TRANSACTION_ACTIONS + 1):
        txn.put_audit({"pk": {"S": "LOG##v"}, "sk": {"S": str(index)}})
    with pytest.raises(ValueError, match="at most 100"):
        store.commit(txn)


def test_get_item_projects_through_placeholders_and_reads_consistently() -> None:
    client = RecordingClient(reply={"Item": {"pk": {"S": "VAULT##v_1"}}})
    item = VaultStore(client, "table").get_vault("v_1", ["state", "name", "pk"])
    assert item == {"pk": {"S": "VAULT##v_1"}}
    ((operation, kwargs),) = client.calls
    assert operation == "get_item"
    assert kwargs["ProjectionExpression"] == "#a0, #a1, #a2"
    assert kwargs["ExpressionAttributeNames"] == {"#a0": "pk", "#a1": "state", "#a2": "name"}
    assert kwargs["ConsistentRead"] is True


@pytest.mark.parametrize(
    ("reasons", "status", "code"),
    [
        (["ConditionalCheckFailed", "None"], 404, "VaultNotFound"),
        (["None", "ConditionalCheckFailed"], 409, "TransactionCancelled"),
        (["TransactionConflict", "None"], 409, "TransactionCancelled"),
    ],
)
def test_cancellation_reasons_map_per_action(reasons: list[str], status: int, code: str) -> None:
    store = VaultStore(RecordingClient(error=_client_error("TransactionCanceledException", reasons)), "table")
    txn = store.transaction()
    txn.update_vault("v_1", {"_mt": {"N": "1"}})
    txn.put_audit({"pk": {"S": "LOG##v_1"}, "sk": {"S": "1"}})
    with pytest.raises(ApiError) as excinfo:
        store.commit(txn)
    assert (excinfo.value.status, excinfo.value.code.value) == (status, code)


@pytest.mark.parametrize(
    "error",
    [
        _client_error("ValidationException"),
        _client_error("ProvisionedThroughputExceededException"),
        EndpointConnectionError(endpoint_url="https://dynamodb.test"),
    ],
)
def test_other_failures_are_storage_errors(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    store = VaultStore(RecordingClient(error=error), "table")
    txn = store.transaction()
    txn.put_audit({"pk": {"S": "LOG##v_1"}, "sk": {"S": "1"}})
    for attempt in (
        lambda: store.commit(txn),
        lambda: store.get_vault("v_1", []),
        lambda: store.query_audit("v_1", 1, None),
    ):
        with pytest.raises(ApiError) as excinfo:
            attempt()
        assert (excinfo.value.status, excinfo.value.code.value) == (500, "StorageError")
    assert "123456789" not in caplog.text
