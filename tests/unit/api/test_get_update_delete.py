"""GET, PATCH and DELETE /vaults/{vault_id} (spec 1.7; decisions D5, D6)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.enclave_keys import encode_hex
from unit.api.harness import ApiHarness, open_stored_field
from vault.api.errors import ApiError
from vault.api.models import SCHEMA_FIELDS, DeleteBody
from vault.enclave.encoding import SealedValue

MISSING = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
NOT_FOUND = {"statusCode": 404, "code": "VaultNotFound", "message": "Vault not found"}


def _decrypt(api: ApiHarness, vault_id: str, *fields: str) -> dict[str, object]:
    response = api.call(
        "POST", f"/vaults/{vault_id}/decrypt", body={"fields": list(fields), "reason": "check"}
    )
    assert response.status == 200, response.text
    data: dict[str, object] = response.json["data"]
    return data


# -- GET ---------------------------------------------------------------------------------


def test_get_reports_presence_of_requested_schema_fields(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann", "ssn9": "123456789"})
    response = api.call(
        "GET", f"/vaults/{vault_id}", query={"fields": " First_Name ,email,SSN4,_sk,pk,nope,,email"}
    )
    assert response.status == 200
    # Normalised, de-duplicated, request order; internal and unknown names are dropped.
    assert list(response.json.items()) == [("first_name", True), ("email", False), ("ssn4", True)]


def test_get_without_fields_is_an_existence_check(api: ApiHarness) -> None:
    vault_id = api.create({})
    assert api.call("GET", f"/vaults/{vault_id}").json == {}
    assert api.call("GET", f"/vaults/{vault_id}", query={"fields": "_pk,_sk"}).json == {}
    before = api.items()
    assert api.call("GET", f"/vaults/{vault_id}", query={"fields": "first_name"}).status == 200
    assert api.items() == before, "GET is not audited"


@pytest.mark.parametrize("query", [None, {"fields": "first_name"}])
def test_get_missing_vault(api: ApiHarness, query: dict[str, str] | None) -> None:
    response = api.call("GET", f"/vaults/{MISSING}", query=query)
    assert response.status == 404
    assert response.json == NOT_FOUND


def test_get_refuses_an_oversized_fields_query(api: ApiHarness) -> None:
    vault_id = api.create({})
    response = api.call("GET", f"/vaults/{vault_id}", query={"fields": "a," * 513})
    assert response.status == 422
    assert response.json["errors"] == [
        {
            "loc": ["query", "fields"],
            "type": "string_too_long",
            "msg": "query parameter fields: must be at most 1024 characters",
        }
    ]


@pytest.mark.parametrize("vault_id", ["v_", "x_abc", "v_abc-def", "v_" + "a" * 28, "VAULT%23%23v_abc"])
def test_malformed_vault_ids_are_invalid(api: ApiHarness, vault_id: str) -> None:
    response = api.call("GET", f"/vaults/{vault_id}")
    assert response.status == 422
    assert response.json["errors"] == [
        {
            "loc": ["path", "vault_id"],
            "type": "string_pattern_mismatch",
            "msg": "path parameter vault_id: must be a vault id: 'v_' and up to 27 letters or digits",
        }
    ]


# -- PATCH -------------------------------------------------------------------------------


def test_patch_updates_fields_and_records_which(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann", "last_name": "Lee"})
    created = api.vault_item(vault_id)
    assert created is not None
    response = api.call("PATCH", f"/vaults/{vault_id}", body={"first_name": " Anna ", "ssn9": "987654321"})
    assert response.status == 200
    assert response.json == {}

    item = api.vault_item(vault_id)
    assert item is not None
    assert item["_ct"] == created["_ct"]
    assert int(item["_mt"]["N"]) > int(created["_mt"]["N"])
    assert item["_pk"] == created["_pk"]
    assert _decrypt(api, vault_id, "first_name", "last_name", "ssn9", "ssn4") == {
        "first_name": "Anna",
        "last_name": "Lee",
        "ssn9": "987654321",
        "ssn4": "4321",
    }
    update = api.audit_items(vault_id)[1]
    assert update["_e"] == {"S": "UpdateVault"}
    assert update["_f"] == {"L": [{"S": "first_name"}, {"S": "ssn9"}, {"S": "ssn4"}]}
    assert update["_o"] == {"S": "Success"}
    assert update["sk"] == {"S": item["_mt"]["N"]}
    assert "_r" not in update


def test_patch_empty_body_changes_nothing(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    response = api.call("PATCH", f"/vaults/{vault_id}", body={})
    assert (response.status, response.json) == (200, {})
    assert api.items() == before


@pytest.mark.parametrize("body", [{}, {"first_name": "Ann"}])
def test_patch_missing_vault_is_404_and_creates_no_stub(api: ApiHarness, body: dict[str, str]) -> None:
    response = api.call("PATCH", f"/vaults/{MISSING}", body=body)
    assert (response.status, response.json) == (404, NOT_FOUND)
    assert api.items() == []


def test_patch_vault_deleted_concurrently_is_404(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    vault_id = api.create({"first_name": "Ann"})
    store = api.service.store
    read = store.get_vault

    def read_then_lose_the_race(vault: str, *args: Any, **kwargs: Any) -> object:
        record = read(vault, *args, **kwargs)
        api.dynamodb.delete_item(
            TableName=store.table_name, Key={"pk": {"S": f"VAULT##{vault}"}, "sk": {"S": "v0"}}
        )
        return record

    monkeypatch.setattr(store, "get_vault", read_then_lose_the_race)
    audit_before = api.audit_items(vault_id)
    response = api.call("PATCH", f"/vaults/{vault_id}", body={"first_name": "Bob"})
    assert (response.status, response.json) == (404, NOT_FOUND)
    assert api.vault_item(vault_id) is None, "no stub item"
    assert api.audit_items(vault_id) == audit_before


def test_patch_legacy_vault_keeps_both_encodings_readable(api: ApiHarness) -> None:
    """Decision D5: a v1 (hex) vault that is PATCHed gets binary fields and still decrypts."""
    vault_id = api.create({"first_name": "Ann"})
    item = api.vault_item(vault_id)
    assert item is not None
    raw = bytes(item["first_name"]["B"])
    legacy = encode_hex(SealedValue(raw[:97], raw[97:]))
    api.dynamodb.update_item(
        TableName=api.service.store.table_name,
        Key={"pk": item["pk"], "sk": item["sk"]},
        UpdateExpression="SET first_name = :hex, #v = :one",
        ExpressionAttributeNames={"#v": "_v"},
        ExpressionAttributeValues={":hex": {"S": legacy}, ":one": {"N": "1"}},
    )
    assert api.call("PATCH", f"/vaults/{vault_id}", body={"last_name": "Lee"}).status == 200
    item = api.vault_item(vault_id)
    assert item is not None
    assert item["_v"] == {"N": "1"}
    assert set(item["first_name"]) == {"S"}
    assert set(item["last_name"]) == {"B"}
    assert _decrypt(api, vault_id, "first_name", "last_name") == {"first_name": "Ann", "last_name": "Lee"}
    sent = api.parent.sent[-1].body
    assert sent["encoding"] == "1"
    assert sent["fields"]["first_name"] == legacy


# -- DELETE ------------------------------------------------------------------------------


def test_delete_all_removes_the_vault_and_keeps_its_log(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    response = api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True, "fields": ["email"]})
    assert (response.status, response.json) == (200, {})
    assert api.vault_item(vault_id) is None
    events = [record["_e"]["S"] for record in api.audit_items(vault_id)]
    assert events == ["DeleteVault", "CreateVault"]
    assert api.call("GET", f"/vaults/{vault_id}").status == 404


@pytest.mark.parametrize("body", [{"delete_all": True}, {"fields": ["first_name"]}])
def test_delete_on_missing_vault_is_404_and_writes_nothing(api: ApiHarness, body: dict[str, object]) -> None:
    response = api.call("DELETE", f"/vaults/{MISSING}", body=body)
    assert (response.status, response.json) == (404, NOT_FOUND)
    assert api.items() == []


def test_delete_fields_removes_them_and_records_which(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann", "email": "a@example.com", "city": "Paris"})
    response = api.call("DELETE", f"/vaults/{vault_id}", body={"fields": [" EMAIL ", "city", "email", "dob"]})
    assert (response.status, response.json) == (200, {})
    item = api.vault_item(vault_id)
    assert item is not None
    assert "email" not in item and "city" not in item
    assert open_stored_field(api, vault_id, "first_name") == "Ann"
    record = api.audit_items(vault_id)[0]
    assert record["_e"] == {"S": "UpdateVault"}
    assert record["_r"] == {"S": "RemoveFields"}
    assert record["_f"] == {"L": [{"S": "email"}, {"S": "city"}, {"S": "dob"}]}
    assert record["sk"] == {"S": item["_mt"]["N"]}


def test_removing_ssn9_also_removes_the_derived_ssn4(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": "123456789", "first_name": "Ann"})
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["ssn9"]}).status == 200
    item = api.vault_item(vault_id)
    assert item is not None
    assert "ssn9" not in item and "ssn4" not in item
    assert api.audit_items(vault_id)[0]["_f"] == {"L": [{"S": "ssn9"}, {"S": "ssn4"}]}


@pytest.mark.parametrize("name", ["_sk", "_pk", "_hs", "pk", "sk", "_id", "nickname"])
def test_delete_refuses_non_schema_names(api: ApiHarness, name: str) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["first_name", name]})
    assert response.status == 422
    assert response.json["errors"] == [
        {
            "loc": ["body", "fields", 1],
            "type": "vault_field",
            "msg": f"fields[1]: '{name}' is not a vault field; known: {', '.join(SCHEMA_FIELDS)}",
        }
    ]
    assert api.items() == before


NOTHING_TO_DELETE = [
    {},
    {"fields": []},
    {"delete_all": False},
    {"delete_all": None, "fields": None},
    {"delete_all": False, "fields": []},
]


@pytest.mark.parametrize("body", NOTHING_TO_DELETE)
def test_delete_that_names_nothing_is_422_and_writes_nothing(api: ApiHarness, body: dict[str, Any]) -> None:
    # Upstream answered 200 and wrote no audit record: a client would read it as deleted.
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", body=body)
    assert response.status == 422, response.text
    assert response.json["code"] == "ValidationError"
    assert response.json["errors"] == [
        {
            "loc": ["body"],
            "type": "nothing_to_delete",
            "msg": "body: set delete_all to true or name at least one field",
        }
    ]
    assert api.items() == before


@pytest.mark.parametrize("body", NOTHING_TO_DELETE)
def test_delete_naming_nothing_is_422_on_a_missing_vault(api: ApiHarness, body: dict[str, Any]) -> None:
    # The body is checked before the vault is looked up, like every other validation error.
    response = api.call("DELETE", f"/vaults/{MISSING}", body=body)
    assert (response.status, response.json["code"]) == (422, "ValidationError")
    assert api.items() == []


def test_the_service_refuses_a_delete_that_names_nothing_however_built(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    with pytest.raises(ApiError) as excinfo:
        api.service.delete(vault_id, DeleteBody.model_construct(delete_all=None, fields=[]))
    assert (excinfo.value.status, excinfo.value.code.value) == (422, "ValidationError")
    assert api.items() == before


@pytest.mark.parametrize("body", [None, {"delete_all": "true"}, {"all": True}, {"fields": "email"}])
def test_delete_body_is_validated(api: ApiHarness, body: object) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", body=body)
    assert response.status == 422
    assert api.items() == before
