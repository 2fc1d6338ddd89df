"""``DELETE /vaults/{vault_id}?forget=true``: the vault item goes, its encrypted key included."""

from __future__ import annotations

from typing import Any

import pytest

from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness
from vault.api.errors import ApiError

MISSING = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
NOT_FOUND = {"statusCode": 404, "code": "VaultNotFound", "message": "Vault not found"}
ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/PrivacyOfficer/bob"
PERSON = {"first_name": "Ann", "email": "ann@example.com", "ssn9": "555443333"}
FORGET = {"forget": "true"}


def _forget_as(vault_id: str, principal: str | None = None) -> tuple[int, Any]:
    event = rest_event("DELETE", f"/vaults/{vault_id}", query=FORGET)
    if principal is not None:
        # What API Gateway adds after IAM authorization.
        event["requestContext"]["identity"].update(
            {"userArn": principal, "caller": "AROAEXAMPLE:bob", "accountId": "123456789012"}
        )
    response = invoke(event)
    return response.status, response.json


def _vault_items(api: ApiHarness) -> list[dict[str, Any]]:
    return [item for item in api.items() if item["pk"]["S"].startswith("VAULT##")]


def test_forget_deletes_every_field_and_the_encrypted_private_key(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    other = api.create({"first_name": "Bo"})
    item = api.vault_item(vault_id)
    assert item is not None and "_sk" in item and "ssn4" in item
    assert _forget_as(vault_id) == (200, {})
    assert api.vault_item(vault_id) is None
    # Nothing of the vault is left anywhere in the table but its log; the other vault is untouched.
    remaining = [item for item in api.items() if vault_id in item["pk"]["S"]]
    assert {item["pk"]["S"] for item in remaining} == {f"LOG##{vault_id}"}
    assert [item["pk"]["S"] for item in _vault_items(api)] == [f"VAULT##{other}"]
    assert api.call("GET", f"/vaults/{vault_id}").status == 404
    decrypt = api.call("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["first_name"], "reason": "x"})
    assert (decrypt.status, decrypt.json) == (404, NOT_FOUND)


def test_forget_writes_a_forget_record_with_the_caller_and_no_values(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _forget_as(vault_id, ROLE_ARN)[0] == 200
    records = api.audit_items(vault_id)
    assert [record["_e"]["S"] for record in records] == ["ForgetVault", "CreateVault"]
    forget = records[0]
    assert forget["_p"] == {"S": ROLE_ARN}
    assert forget["_o"] == {"S": "Success"}
    assert forget["_g"] == {"S": "req-1"}
    # No field names, reasons or expressions: the record says the vault was forgotten, and by whom.
    assert not {"_f", "_r", "_x"} & set(forget)
    text = repr(records)
    assert not any(value in text for value in PERSON.values())


def test_the_audit_route_shows_the_forget_after_the_vault_is_gone(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["email"]})
    assert _forget_as(vault_id, ROLE_ARN)[0] == 200
    response = api.call("GET", f"/vaults/{vault_id}/audit")
    assert response.status == 200
    events = response.json["events"]
    assert [event["event"] for event in events] == ["ForgetVault", "UpdateVault", "CreateVault"]
    assert (events[0]["principal"], events[0]["fields"], events[0]["outcome"]) == (ROLE_ARN, [], "Success")


def test_without_iam_authorization_the_forget_record_has_no_principal(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _forget_as(vault_id)[0] == 200
    assert "_p" not in api.audit_items(vault_id)[0]


def test_a_second_forget_is_404_and_writes_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _forget_as(vault_id)[0] == 200
    before = api.items()
    assert _forget_as(vault_id) == (404, NOT_FOUND)
    assert api.items() == before


def test_forgetting_a_missing_vault_is_404_and_writes_nothing(api: ApiHarness) -> None:
    assert _forget_as(MISSING) == (404, NOT_FOUND)
    assert api.items() == []


def test_forget_after_delete_all_is_404(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True}).status == 200
    assert _forget_as(vault_id) == (404, NOT_FOUND)


def test_an_empty_body_is_no_body(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    response = api.call("DELETE", f"/vaults/{vault_id}", query=FORGET, raw_body="")
    assert (response.status, response.json) == (200, {})
    assert api.vault_item(vault_id) is None


@pytest.mark.parametrize(
    "body", [{"fields": ["email"]}, {"delete_all": True}, {"delete_all": True, "fields": ["dob"]}]
)
def test_a_body_with_forget_is_422_and_writes_nothing(api: ApiHarness, body: dict[str, Any]) -> None:
    vault_id = api.create(PERSON)
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", query=FORGET, body=body)
    assert response.status == 422, response.text
    assert response.json["code"] == "ValidationError"
    assert response.json["errors"] == [
        {"loc": ["body"], "type": "forget_with_body", "msg": "body: forget=true takes no body; send none"}
    ]
    assert api.items() == before


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", "True", "", "on", "true,true"])
def test_forget_takes_only_true_or_false(api: ApiHarness, value: str) -> None:
    vault_id = api.create(PERSON)
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", query={"forget": value})
    assert response.status == 422, response.text
    assert response.json["errors"] == [
        {
            "loc": ["query", "forget"],
            "type": "literal_error",
            "msg": "query parameter forget: must be 'true' or 'false'",
        }
    ]
    assert api.items() == before


def test_forget_false_is_an_ordinary_delete(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    response = api.call(
        "DELETE", f"/vaults/{vault_id}", query={"forget": "false"}, body={"fields": ["email"]}
    )
    assert (response.status, response.json) == (200, {})
    item = api.vault_item(vault_id)
    assert item is not None and "email" not in item and "_sk" in item
    assert api.audit_items(vault_id)[0]["_e"] == {"S": "UpdateVault"}


@pytest.mark.parametrize("query", [None, {"forget": "false"}])
def test_without_forget_a_body_is_still_required(api: ApiHarness, query: dict[str, str] | None) -> None:
    vault_id = api.create(PERSON)
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", query=query)
    assert response.status == 422, response.text
    assert response.json["errors"] == [
        {"loc": ["body"], "type": "missing", "msg": "body: a JSON object is required"}
    ]
    assert api.items() == before


def test_a_concurrently_deleted_vault_is_404_and_leaves_no_forget_record(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.dynamodb.delete_item(
        TableName="nitro-vault-test", Key={"pk": {"S": f"VAULT##{vault_id}"}, "sk": {"S": "v0"}}
    )
    with pytest.raises(ApiError) as excinfo:
        api.service.forget(vault_id)
    assert (excinfo.value.status, excinfo.value.code.value) == (404, "VaultNotFound")
    assert [record["_e"]["S"] for record in api.audit_items(vault_id)] == ["CreateVault"]


def test_the_openapi_document_describes_forget() -> None:
    document = invoke(rest_event("GET", "/swagger", query={"format": "json"})).json
    delete = document["paths"]["/vaults/{vault_id}"]["delete"]
    params = {param["name"]: param for param in delete["parameters"]}
    assert params["forget"]["in"] == "query"
    assert params["forget"]["required"] is False
    assert params["forget"]["schema"]["enum"] == ["true", "false"]
    assert params["forget"]["schema"]["default"] == "false"
    assert delete["requestBody"].get("required", False) is False
    assert "ForgetVault" in delete["description"]
    assert set(delete["responses"]) == {"200", "404", "409", "422", "500"}
