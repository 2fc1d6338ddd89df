"""A ciphertext only opens where it was written: its own field of its own vault.

Each field is sealed with the field name as AAD and the vault id as HPKE info, and the
vault key is bound to its vault id as KMS encryption context (decision D10). Someone with
write access to the table moves ciphertexts around (raw ``UpdateItem`` on the backend);
the vault must answer ``null`` plus an error for each moved field, never a plaintext,
and a vault key replayed under another vault must not open at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from e2e.security.targets import VaultTarget
from emulator.tools.client import VaultApiError, VaultClient
from vault.infra.table import vault_key

NEEDS = "write access to the emulator backend's table"


@pytest.fixture
def client(vault_target: VaultTarget) -> Iterator[VaultClient]:
    with vault_target.client() as api:
        yield api


class RawTable:
    """The vault table as a tamperer with DynamoDB access sees it."""

    def __init__(self, target: VaultTarget) -> None:
        self.name = str(target.emulator(NEEDS).facts["table_name"])
        self.dynamodb = target.backend_client("dynamodb", NEEDS)

    def item(self, vault_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.dynamodb.get_item(
            TableName=self.name, Key=vault_key(vault_id), ConsistentRead=True
        )["Item"]
        return item

    def write(self, vault_id: str, attributes: dict[str, Any]) -> None:
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        values = {f":a{i}": value for i, value in enumerate(attributes.values())}
        self.dynamodb.update_item(
            TableName=self.name,
            Key=vault_key(vault_id),
            UpdateExpression="SET " + ", ".join(f"{n} = :{n[1:]}" for n in names),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


def _unable(name: str, errors: list[str]) -> bool:
    return any(error.startswith(f"[{name}] unable to decrypt data") for error in errors)


def test_a_ciphertext_moved_to_another_field_does_not_decrypt(
    vault_target: VaultTarget, client: VaultClient
) -> None:
    table = RawTable(vault_target)
    vault_id = client.create(
        {"first_name": "Moved Firstname", "last_name": "Kept Lastname", "ssn9": "123454321"}
    )
    stored = table.item(vault_id)
    # Over an existing field, into a field the vault lacked, and ssn9's into its derived ssn4.
    table.write(
        vault_id,
        {"last_name": stored["first_name"], "middle_name": stored["first_name"], "ssn4": stored["ssn9"]},
    )

    result = client.decrypt(
        vault_id, ["first_name", "last_name", "middle_name", "ssn4", "ssn9"], reason="moved"
    )
    assert result.data == {
        "first_name": "Moved Firstname",
        "last_name": None,
        "middle_name": None,
        "ssn4": None,
        "ssn9": "123454321",
    }
    assert [_unable(name, result.errors) for name in ("last_name", "middle_name", "ssn4")] == [True] * 3
    assert len(result.errors) == 3
    assert "Moved Firstname" not in " ".join(result.errors)
    assert client.audit_trail(vault_id)[-1].outcome == "PartialSuccess"


def test_a_ciphertext_moved_to_another_vault_does_not_decrypt(
    vault_target: VaultTarget, client: VaultClient
) -> None:
    table = RawTable(vault_target)
    source = client.create({"first_name": "Source Firstname", "email": "source@example.org"})
    target = client.create({"first_name": "Target Firstname"})
    moved = table.item(source)
    table.write(target, {"first_name": moved["first_name"], "email": moved["email"]})

    result = client.decrypt(target, ["first_name", "email"], reason="moved across vaults")
    assert result.data == {"first_name": None, "email": None}
    assert _unable("first_name", result.errors) and _unable("email", result.errors)
    assert "Source" not in " ".join(result.errors)
    # The source vault still opens its own ciphertexts.
    assert client.decrypt(source, ["first_name"], reason="source intact").data == {
        "first_name": "Source Firstname"
    }


def test_a_vault_key_replayed_under_another_vault_is_refused(
    vault_target: VaultTarget, client: VaultClient
) -> None:
    table = RawTable(vault_target)
    source = client.create({"first_name": "Replayed Firstname"})
    target = client.create({"first_name": "Other Firstname"})
    copied = table.item(source)
    # The whole key set and the ciphertext: only the vault id (info, encryption context) differs.
    table.write(target, {name: copied[name] for name in ("_sk", "_pk", "_hs", "_v", "first_name")})

    with pytest.raises(VaultApiError) as refused:
        client.decrypt(target, ["first_name"], reason="replayed key")
    assert refused.value.status == 502
    assert refused.value.code == "EnclaveDecryptFailed"
    assert "Replayed Firstname" not in str(refused.value.body)
    last = client.audit_trail(target)[-1]
    assert (last.event, last.fields, last.outcome) == ("DecryptVault", ["first_name"], "EnclaveDecryptFailed")
