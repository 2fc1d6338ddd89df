"""Instance credentials expire while IMDS is failing: the parent refuses cleanly and recovers with IMDS."""

from __future__ import annotations

import time
from typing import Any

import pytest

from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultClient

from .support import PII, Table, documented, expect_error, unchanged_pids

LIFETIME = 4


def short_lived_parent_credentials(faults: FaultController) -> None:
    """Make IMDS issue short credentials and the parent forget the long ones it holds.

    The parent re-reads IMDS only when its cached credential is within 60 s of expiry;
    the emulator's normal credential lasts 6 h, so the parent is cycled once (this is
    the arrangement, not the fault under test).
    """
    faults.enable("imds-expiry", lifetime=LIFETIME)
    faults.enable("parent-down")
    faults.disable("parent-down")


@pytest.mark.parametrize("outage", [{"status": 500}, {"delay": 1.5}], ids=["failing", "slow"])
def test_expired_credentials_and_imds_outage(
    client: VaultClient, faults: FaultController, table: Table, outage: dict[str, Any]
) -> None:
    vault_id = client.create(PII)
    short_lived_parent_credentials(faults)
    before = faults.pids()
    fetched = time.monotonic()
    assert client.decrypt(vault_id, ["first_name"], reason="fresh").data == {"first_name": "Ada"}

    faults.enable("imds-outage", **outage)
    # Still inside the credential's lifetime: the failed refresh is invisible.
    if "status" in outage:
        assert client.decrypt(vault_id, ["first_name"], reason="cached").data == {"first_name": "Ada"}
    time.sleep(max(0.0, fetched + LIFETIME + 0.5 - time.monotonic()))
    expect_error(lambda: client.decrypt(vault_id, ["first_name"], reason="expired"), 502, "ParentError")
    documented("imds-outage", 502, "ParentError")
    assert table.audit(vault_id)[-1] == ("DecryptVault", "ParentError")

    faults.disable("imds-outage")
    assert client.decrypt(vault_id, ["first_name"], reason="refreshed").data == {"first_name": "Ada"}
    faults.disable("imds-expiry")
    assert client.decrypt(vault_id, ["first_name"], reason="long-lived").data == {"first_name": "Ada"}
    unchanged_pids(before, faults.pids(), touched=set())


def test_short_lived_credentials_are_refreshed_on_demand(
    client: VaultClient, faults: FaultController
) -> None:
    vault_id = client.create(PII)
    short_lived_parent_credentials(faults)
    for round_number in range(3):
        assert client.decrypt(vault_id, ["ssn4"], reason=f"round {round_number}").data == {"ssn4": "6789"}
        time.sleep(1)
    documented("imds-expiry", 200, None)
