"""Write conflicts and lost answers: a 409 or 404 leaves the previous values, a retry never writes twice."""

from __future__ import annotations

from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultClient

from .support import ANSWER_BOUND, PII, Table, documented, expect_error, timed, unchanged_pids


def test_conflicting_create_writes_neither_vault_nor_audit(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    before, counts = faults.pids(), table.counts()
    with faults.injected("dynamodb-conflict", actions="Put"):
        expect_error(lambda: client.create(PII), 409, "TransactionCancelled")
    documented("dynamodb-conflict", 409, "TransactionCancelled")
    assert table.counts() == counts
    assert client.get(client.create(PII), ["first_name"]) == {"first_name": True}
    unchanged_pids(before, faults.pids(), touched=set())


def test_conflicting_update_and_delete_keep_the_previous_values(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    item, audit = table.vault(vault_id), table.audit(vault_id)
    with faults.injected("dynamodb-conflict") as armed:
        assert armed["result"]["actions"] == ["Put", "Update", "Delete"]
        expect_error(lambda: client.update(vault_id, {"first_name": "Eve"}), 409, "TransactionCancelled")
        expect_error(lambda: client.delete_fields(vault_id, ["ssn9"]), 409, "TransactionCancelled")
        expect_error(lambda: client.delete(vault_id), 409, "TransactionCancelled")
        # Reads and decrypts (whose audit write touches no vault item) are unaffected.
        assert client.decrypt(vault_id, ["first_name"], reason="during").data == {"first_name": "Ada"}
    assert table.vault(vault_id) == item
    assert table.audit(vault_id) == [*audit, ("DecryptVault", "Success")]

    client.update(vault_id, {"first_name": "Eve"})
    assert client.decrypt(vault_id, ["first_name", "ssn4"], reason="after").data == {
        "first_name": "Eve",
        "ssn4": "6789",
    }


def test_a_decrypt_whose_audit_write_fails_returns_no_plaintext(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    audit = table.audit(vault_id)
    with faults.injected("dynamodb-conflict", target="all", actions="Put"):
        error = expect_error(
            lambda: client.decrypt(vault_id, ["ssn9"], reason="x"), 409, "TransactionCancelled"
        )
    documented("dynamodb-conflict", 409, "TransactionCancelled")
    assert "123456789" not in str(error.body)
    assert table.audit(vault_id) == audit
    assert client.decrypt(vault_id, ["ssn9"], reason="y").data == {"ssn9": "123456789"}


def test_update_racing_a_delete_is_404_and_leaves_no_orphan_audit(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    audit = table.audit(vault_id)
    faults.enable("dynamodb-conflict", mode="delete-race", actions="Update", count=1)
    expect_error(lambda: client.update(vault_id, {"first_name": "Eve"}), 404, "VaultNotFound")
    documented("dynamodb-conflict", 404, "VaultNotFound")
    counters = faults.disable("dynamodb-conflict")["result"]["counters"]
    assert counters["races"] >= 1
    assert table.vault(vault_id) is None
    assert table.audit(vault_id) == audit
    expect_error(lambda: client.get(vault_id, ["first_name"]), 404, "VaultNotFound")


def test_a_write_whose_answer_is_lost_is_applied_once_and_answered(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    counts = table.counts()
    with faults.injected("dynamodb-slow-commit", ms=1500, actions="Put"):
        created = timed(lambda: client.create(PII))
    assert created.error is None, created.error
    assert created.seconds < ANSWER_BOUND
    vault_id = created.value
    after = table.counts()
    assert (after["VAULT"], after["LOG"]) == (counts["VAULT"] + 1, counts["LOG"] + 1)

    with faults.injected("dynamodb-slow-commit", actions="Update"):
        client.update(vault_id, {"first_name": "Eve"})
    with faults.injected("dynamodb-slow-commit", target="all", actions="Put") as held:
        assert client.decrypt(vault_id, ["first_name"], reason="held").data == {"first_name": "Eve"}
    documented("dynamodb-slow-commit", 200, None)
    assert held["result"]["delay_ms"] == 1500
    assert table.audit(vault_id) == [
        ("CreateVault", "Success"),
        ("UpdateVault", "Success"),
        ("DecryptVault", "Success"),
    ]
