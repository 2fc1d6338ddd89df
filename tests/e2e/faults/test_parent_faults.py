"""The parent is stopped (or frozen) and comes back; the API says so and nothing else restarts."""

from __future__ import annotations

import pytest

from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultClient

from .support import PII, Table, documented, expect_error, unchanged_pids


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "sigkill"])
def test_parent_down_and_back(client: VaultClient, faults: FaultController, table: Table, hard: bool) -> None:
    vault_id = client.create(PII)
    before = faults.pids()
    audit = table.audit(vault_id)

    faults.enable("parent-down", hard=hard)
    expect_error(
        lambda: client.decrypt(vault_id, ["first_name"], reason="down"), 502, "ParentUnreachable", bound=2
    )
    documented("parent-down", 502, "ParentUnreachable")
    # Routes that do not decrypt never need the parent, unless they write a searchable field:
    # that needs its token from the enclave, and no vault is written without it.
    client.update(vault_id, {"first_name": "Augusta"})
    unsearchable = {**{k: v for k, v in PII.items() if k != "ssn9"}, "ssn4": "6789"}
    assert client.get(client.create(unsearchable), ["ssn4"]) == {"ssn4": True}
    expect_error(lambda: client.create(PII), 502, "ParentUnreachable", bound=2)
    assert table.audit(vault_id) == [
        *audit,
        ("DecryptVault", "ParentUnreachable"),
        ("UpdateVault", "Success"),
    ]

    faults.disable("parent-down")
    assert client.decrypt(vault_id, ["first_name"], reason="back").data == {"first_name": "Augusta"}
    after = faults.pids()
    unchanged_pids(before, after, touched={"parent"})
    assert after["parent"] and after["parent"] != before["parent"]


def test_parent_frozen_times_out_then_resumes(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    before = faults.pids()
    with faults.injected("parent-freeze"):
        # The API's parent timeout is 5 s: the answer comes after it, and well before the gateway's 10 s.
        expect_error(
            lambda: client.decrypt(vault_id, ["dob"], reason="frozen"), 504, "ParentTimeout", bound=8
        )
    documented("parent-freeze", 504, "ParentTimeout")
    assert client.decrypt(vault_id, ["dob"], reason="thawed").data == {"dob": "1990-12-10"}
    # The request went out and no answer came: the enclave may have decrypted, so the outcome
    # is unknown, not failed (decision D16; the record keeps ParentTimeout as its error code).
    assert table.audit(vault_id)[-2:] == [("DecryptVault", "Unknown"), ("DecryptVault", "Success")]
    unchanged_pids(before, faults.pids(), touched=set())
