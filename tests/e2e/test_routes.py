"""Every route of the API, through the emulator's gateway, parent and sandboxed enclave."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
import requests

from emulator.daemon.state import EmulatorState
from emulator.tools.client import AuditReader, VaultApiError, VaultClient

PII = {
    "first_name": "Test",
    "last_name": "User",
    "email": "test@example.com",
    "phone_number": "+15554443333",
    "dob": "2000-07-04",
    "ssn9": "123456789",
    "country": "US",
}


def expected_age(dob: str) -> int:
    born = dt.date.fromisoformat(dob)
    today = dt.datetime.now(dt.UTC).date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def audit(stack: EmulatorState, vault_id: str) -> list[str]:
    facts = stack.facts
    reader = AuditReader(
        table_name=facts["table_name"],
        endpoint_url=facts["dynamodb_endpoint"],
        region=facts["region"],
        aws_access_key_id=facts["backend_access_key_id"],
        aws_secret_access_key=facts["backend_secret_access_key"],
    )
    return [event.event for event in reader.events(vault_id)]


def test_create_get_update_decrypt_delete(client: VaultClient, stack: EmulatorState) -> None:
    vault_id = client.create(PII)
    assert vault_id.startswith("v_")

    presence = client.get(vault_id, ["first_name", "ssn4", "middle_name", "_sk"])
    assert presence == {"first_name": True, "ssn4": True, "middle_name": False}
    assert client.get(vault_id) == {}

    client.update(vault_id, {"first_name": "Updated", "middle_name": "M"})
    assert client.get(vault_id, ["middle_name"]) == {"middle_name": True}

    result = client.decrypt(
        vault_id,
        ["first_name", "dob", "ssn4", "email"],
        reason="e2e",
        expressions={
            "age": "date(dob).age()",
            "ssn_masked": '"***-**-" + ssn4',
            "email_sha256": "sha256(email)",
        },
    )
    assert result.errors == []
    assert result.data["first_name"] == "Updated"
    assert result.data["ssn4"] == "6789"
    assert result.data["age"] == expected_age(PII["dob"])
    assert result.data["ssn_masked"] == "***-**-6789"
    assert result.data["email_sha256"] == hashlib.sha256(b"test@example.com").hexdigest()

    client.delete_fields(vault_id, ["middle_name"])
    assert client.get(vault_id, ["middle_name", "first_name"]) == {"middle_name": False, "first_name": True}

    client.delete(vault_id)
    with pytest.raises(VaultApiError) as missing:
        client.get(vault_id, ["first_name"])
    assert missing.value.status == 404

    events = audit(stack, vault_id)
    assert events[:2] == ["CreateVault", "UpdateVault"] and "DecryptVault" in events
    assert events[-1] == "DeleteVault"


def test_decrypting_a_field_the_vault_lacks(client: VaultClient) -> None:
    vault_id = client.create({"first_name": "Only"})
    result = client.decrypt(vault_id, ["first_name", "ssn9"], reason="e2e")
    assert result.data["first_name"] == "Only"
    assert result.data.get("ssn9") is None
    assert any("ssn9" in error for error in result.errors)


def test_validation_and_unknown_routes(client: VaultClient) -> None:
    with pytest.raises(VaultApiError) as invalid:
        client.create({"phone_number": "not a phone"})
    assert invalid.value.status == 422
    response = client.request("GET", "/nothing-here")
    assert response.status_code == 404
    with pytest.raises(VaultApiError) as missing:
        client.decrypt("v_doesnotexist", ["first_name"], reason="e2e")
    assert missing.value.status == 404


def test_api_gateway_answers_for_paths_without_a_method(stack: EmulatorState) -> None:
    root = stack.api_url.rsplit("/", 1)[0]
    for url in (stack.api_url, root + "/", root + "/vaults"):
        response = requests.get(url, timeout=10)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_security_headers_and_openapi(client: VaultClient) -> None:
    response = client.request("GET", "/vaults/v_x", params={"fields": "first_name"})
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    document = client.openapi()
    assert document["info"]["title"] == "Nitro Vault API"
    paths = set(document["paths"])
    assert {"/vaults", "/vaults/{vault_id}", "/vaults/{vault_id}/decrypt"} <= paths
