"""POST /vaults (spec 1.4, 1.5; decisions D5, D10, D14)."""

from __future__ import annotations

import base64
import re

import pytest

from unit.api.harness import ApiHarness, api_harness, open_stored_field
from vault.api import service as service_module
from vault.api.ids import VAULT_ID_PATTERN
from vault.api.models import EXAMPLE_CREATE
from vault.common.suites import DEFAULT_SUITE

EXAMPLE = EXAMPLE_CREATE


def test_create_stores_the_documented_item_layout(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults", body=EXAMPLE)
    assert response.status == 200
    assert set(response.json) == {"id"}
    vault_id = response.json["id"]
    assert re.match(VAULT_ID_PATTERN, vault_id)

    item = api.vault_item(vault_id)
    assert item is not None
    assert item["pk"] == {"S": f"VAULT##{vault_id}"}
    assert item["sk"] == {"S": "v0"}
    assert item["_id"] == {"S": vault_id}
    assert item["_v"] == {"N": "2"}
    assert bytes(item["_hs"]["B"]) == DEFAULT_SUITE.suite_id
    assert base64.b64encode(bytes(item["_hs"]["B"])) == b"SFBLRQARAAIAAg=="
    assert item["_ct"] == item["_mt"]
    assert set(item) == {"pk", "sk", "_id", "_v", "_hs", "_sk", "_pk", "_ct", "_mt", *EXAMPLE, "ssn4"}
    for name in [*EXAMPLE, "ssn4"]:
        # Decision D5: always DynamoDB Binary, enc (97 bytes) || ciphertext || 16-byte tag.
        assert set(item[name]) == {"B"}
        assert len(bytes(item[name]["B"])) == 97 + len(EXAMPLE.get(name, "6789").encode()) + 16


def test_fields_are_sealed_to_the_vault_key_with_vault_id_and_field_name(api: ApiHarness) -> None:
    vault_id = api.create(EXAMPLE)
    for name, value in EXAMPLE.items():
        assert open_stored_field(api, vault_id, name) == value
    assert open_stored_field(api, vault_id, "ssn4") == "6789"


def test_key_pair_is_bound_to_the_vault_id(api: ApiHarness) -> None:
    vault_id = api.create({})
    assert api.kms.key_pair_calls == [
        {"KeyId": api.key_arn, "KeyPairSpec": "ECC_NIST_P384", "EncryptionContext": {"vault_id": vault_id}}
    ]
    item = api.vault_item(vault_id)
    assert item is not None
    with pytest.raises(api.kms.exceptions.InvalidCiphertextException):
        api.kms.decrypt(CiphertextBlob=item["_sk"]["B"], EncryptionContext={"vault_id": "v_other"})


def test_client_ssn4_replaces_the_derived_one(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": "123456789", "ssn4": "0000"})
    assert open_stored_field(api, vault_id, "ssn4") == "0000"


def test_values_are_stored_stripped(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "  Ann \t", "ssn9": " 123456789 "})
    assert open_stored_field(api, vault_id, "first_name") == "Ann"
    assert open_stored_field(api, vault_id, "ssn4") == "6789"


def test_create_writes_one_audit_record(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": "123456789", "first_name": "Ann"})
    (record,) = api.audit_items(vault_id)
    item = api.vault_item(vault_id)
    assert item is not None
    assert record["pk"] == {"S": f"LOG##{vault_id}"}
    assert record["sk"] == {"S": item["_ct"]["N"]}
    assert record["_e"] == {"S": "CreateVault"}
    assert record["_id"] == {"S": vault_id}
    assert record["_ct"] == item["_ct"]
    assert record["_o"] == {"S": "Success"}
    assert record["_f"] == {"L": [{"S": "first_name"}, {"S": "ssn9"}, {"S": "ssn4"}]}
    assert "_r" not in record
    assert "expire_at" not in record


def test_audit_retention_sets_expire_at(monkeypatch: pytest.MonkeyPatch) -> None:
    with api_harness(monkeypatch, audit_retention_days=30) as api:
        vault_id = api.create({"first_name": "Ann"})
        (record,) = api.audit_items(vault_id)
        created_seconds = int(record["_ct"]["N"]) // 1_000_000
        assert record["expire_at"] == {"N": str(created_seconds + 30 * 86_400)}
        item = api.vault_item(vault_id)
        assert item is not None
        assert "expire_at" not in item


def test_empty_body_creates_an_empty_vault(api: ApiHarness) -> None:
    vault_id = api.create({})
    item = api.vault_item(vault_id)
    assert item is not None
    assert set(item) == {"pk", "sk", "_id", "_v", "_hs", "_sk", "_pk", "_ct", "_mt"}
    assert "_f" not in api.audit_items(vault_id)[0]


def test_missing_body_is_invalid(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults")
    assert response.status == 422
    assert response.json["code"] == "ValidationError"
    assert api.items() == []


def test_kms_failure_is_a_502_and_writes_nothing(api: ApiHarness) -> None:
    api.kms.failure = "AccessDeniedException"
    response = api.call("POST", "/vaults", body={"first_name": "Ann"})
    assert response.status == 502
    assert response.json == {
        "statusCode": 502,
        "code": "KeyGenerationFailed",
        "message": "Unable to create the vault's key",
    }
    assert api.items() == []


def test_id_collision_cancels_the_transaction(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    monkeypatch.setattr(service_module, "new_vault_id", lambda: vault_id)
    response = api.call("POST", "/vaults", body={"first_name": "Mallory"})
    assert response.status == 409
    assert response.json == {
        "statusCode": 409,
        "code": "TransactionCancelled",
        "message": "Transaction Cancelled",
    }
    assert api.items() == before
    assert open_stored_field(api, vault_id, "first_name") == "Ann"
