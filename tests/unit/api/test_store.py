"""The store's DynamoDB requests, item layout and error mapping (spec 1.5, 1.6), against a recording stub."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from vault.api.audit import AuditEntry, AuditEventType, AuditRecord
from vault.api.errors import ApiError
from vault.api.store import MAX_TRANSACTION_ACTIONS, NewVault, VaultPart, VaultRecord, VaultStore

AUDIT = AuditRecord(AuditEventType.UPDATE, "v_1", 1)


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
    txn.update_vault("v_1", modified_micros=7, fields={"state": b"x"}, remove=["name", "ssn4"])
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
    txn.put_vault(
        NewVault(
            vault_id="v_1",
            suite_id=b"suite",
            public_key=b"public",
            encrypted_private_key=b"blob",
            encoding_version=2,
            created_micros=5,
            fields={"first_name": b"sealed"},
        )
    )
    txn.put_audit(AuditRecord(AuditEventType.CREATE, "v_1", 5, fields=["first_name"]))
    txn.delete_vault("v_2")
    store.commit(txn)
    ((_, kwargs),) = client.calls
    put, audit, delete = kwargs["TransactItems"]
    assert put["Put"]["Item"] == {
        "pk": {"S": "VAULT##v_1"},
        "sk": {"S": "v0"},
        "_id": {"S": "v_1"},
        "_v": {"N": "2"},
        "_hs": {"B": b"suite"},
        "_sk": {"B": b"blob"},
        "_pk": {"B": b"public"},
        "_ct": {"N": "5"},
        "_mt": {"N": "5"},
        "first_name": {"B": b"sealed"},
    }
    assert audit["Put"]["Item"] == {
        "pk": {"S": "LOG##v_1"},
        "sk": {"S": "5"},
        "_e": {"S": "CreateVault"},
        "_id": {"S": "v_1"},
        "_ct": {"N": "5"},
        "_o": {"S": "Success"},
        "_f": {"L": [{"S": "first_name"}]},
    }
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
        txn.put_audit(AuditRecord(AuditEventType.UPDATE, "v", index))
    with pytest.raises(ValueError, match="at most 100"):
        store.commit(txn)


def test_get_item_projects_through_placeholders_and_reads_consistently() -> None:
    client = RecordingClient(reply={"Item": {"pk": {"S": "VAULT##v_1"}}})
    record = VaultStore(client, "table").get_vault("v_1", ["state", "name", "state"], {VaultPart.SUITE})
    assert record == VaultRecord("v_1")
    ((operation, kwargs),) = client.calls
    assert operation == "get_item"
    assert kwargs["ProjectionExpression"] == "#a0, #a1, #a2, #a3"
    assert kwargs["ExpressionAttributeNames"] == {"#a0": "pk", "#a1": "_hs", "#a2": "state", "#a3": "name"}
    assert kwargs["ConsistentRead"] is True


def test_a_read_is_a_typed_record() -> None:
    item = {
        "pk": {"S": "VAULT##v_1"},
        "_v": {"N": "1"},
        "_hs": {"B": b"suite"},
        "_sk": {"B": b"blob"},
        "_pk": {"B": b"public"},
        "_ct": {"N": "3"},
        "_mt": {"N": "4"},
        "first_name": {"B": b"binary"},
        "last_name": {"S": "04ab#cd"},
        "city": {"N": "1"},
    }
    parts = set(VaultPart)
    names = ["first_name", "last_name", "city", "dob"]
    record = VaultStore(RecordingClient(reply={"Item": item}), "table").get_vault("v_1", names, parts)
    assert record == VaultRecord(
        vault_id="v_1",
        suite_id=b"suite",
        public_key=b"public",
        encrypted_private_key=b"blob",
        encoding_version=1,
        created_micros=3,
        modified_micros=4,
        # Binary is the current encoding, String legacy hex; a shape neither API writes
        # reaches the enclave as an empty legacy value, which it refuses for that field.
        fields={"first_name": b"binary", "last_name": "04ab#cd", "city": ""},
    )
    assert "binary" not in repr(record) and "04ab" not in repr(record)


def test_a_missing_vault_reads_as_none() -> None:
    assert VaultStore(RecordingClient(reply={}), "table").get_vault("v_1") is None


def test_audit_records_expire_when_retention_is_set() -> None:
    client = RecordingClient()
    store = VaultStore(client, "table")
    txn = store.transaction()
    txn.put_audit(AuditRecord(AuditEventType.DECRYPT, "v_1", 2_000_000, reason="why", outcome="Denied"), 1)
    store.commit(txn)
    ((_, kwargs),) = client.calls
    item = kwargs["TransactItems"][0]["Put"]["Item"]
    assert item["expire_at"] == {"N": str(2 + 86_400)}
    assert (item["_r"], item["_o"]) == ({"S": "why"}, {"S": "Denied"})
    assert "_f" not in item


def test_audit_reads_accept_upstream_items() -> None:
    upstream = {"pk": {"S": "LOG##v_1"}, "sk": {"S": "17"}, "_e": {"S": "DecryptVault"}, "_r": {"S": "r"}}
    ours = {
        "pk": {"S": "LOG##v_1"},
        "sk": {"S": "20"},
        "_e": {"S": "UpdateVault"},
        "_ct": {"N": "20"},
        "_f": {"L": [{"S": "email"}, {"N": "1"}]},
        "_o": {"S": "Success"},
    }
    reply = {"Items": [ours, upstream], "LastEvaluatedKey": {"pk": {"S": "LOG##v_1"}, "sk": {"S": "17"}}}
    entries, last = VaultStore(RecordingClient(reply=reply), "table").query_audit("v_1", 2, None)
    assert entries == [
        AuditEntry("UpdateVault", 20, fields=("email",), outcome="Success"),
        AuditEntry("DecryptVault", 17, reason="r"),
    ]
    assert last == "17"


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
    txn.update_vault("v_1", modified_micros=1)
    txn.put_audit(AUDIT)
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
    txn.put_audit(AUDIT)
    for attempt in (
        lambda: store.commit(txn),
        lambda: store.get_vault("v_1"),
        lambda: store.query_audit("v_1", 1, None),
    ):
        with pytest.raises(ApiError) as excinfo:
            attempt()
        assert (excinfo.value.status, excinfo.value.code.value) == (500, "StorageError")
    assert "123456789" not in caplog.text
