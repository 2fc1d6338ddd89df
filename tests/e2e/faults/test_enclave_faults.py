"""The enclave dies mid-request, or is restarted, while the rest of the emulator keeps running."""

from __future__ import annotations

import threading
import time

from emulator.daemon.state import EmulatorState
from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultApiError, VaultClient

from .support import ANSWER_BOUND, PII, Table, documented, expect_error, timed, unchanged_pids

#: Upper bound of requests the background client sends while the enclave restarts.
MAX_REQUESTS_DURING_RESTART = 300


def test_enclave_killed_while_a_decrypt_is_inside_it(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    before = faults.pids()
    item, audit = table.vault(vault_id), table.audit(vault_id)

    outcome = faults.kill_enclave_mid_decrypt(
        lambda: client.decrypt(vault_id, ["first_name"], reason="in flight")
    )

    assert outcome.kill["result"]["killed"] and outcome.kill["result"]["sandbox_exited"], outcome.kill
    assert isinstance(outcome.error, VaultApiError), outcome.value
    assert (outcome.error.status, outcome.error.code) == (503, "EnclaveUnavailable"), outcome.error
    assert outcome.seconds < ANSWER_BOUND
    documented("enclave-kill", 503, "EnclaveUnavailable")

    # While the enclave is down, decrypts fail fast and everything else still works, but for
    # writes of a searchable field (ssn9): no vault is written without its token.
    expect_error(lambda: client.decrypt(vault_id, ["first_name"], reason="down"), 503, "EnclaveUnavailable")
    client.update(vault_id, {"last_name": "Byron"})
    unsearchable = {k: v for k, v in PII.items() if k != "ssn9"}
    assert client.get(client.create(unsearchable), ["first_name"]) == {"first_name": True}
    expect_error(lambda: client.create(PII), 503, "EnclaveUnavailable")

    # Nothing half-written: the vault is as updated, and each failed attempt is audited with its outcome.
    assert {k: v for k, v in (table.vault(vault_id) or {}).items() if k not in ("last_name", "_mt")} == {
        k: v for k, v in (item or {}).items() if k not in ("last_name", "_mt")
    }
    failed = ("DecryptVault", "EnclaveUnavailable")
    assert table.audit(vault_id) == [*audit, failed, failed, ("UpdateVault", "Success")]

    faults.disable("enclave-kill")
    result = client.decrypt(vault_id, ["first_name", "last_name"], reason="after")
    assert result.data == {"first_name": "Ada", "last_name": "Byron"}
    after = faults.pids()
    unchanged_pids(before, after, touched={"enclave"})
    assert after["enclave"] and after["enclave"] != before["enclave"]


def test_enclave_killed_between_requests(client: VaultClient, faults: FaultController) -> None:
    vault_id = client.create(PII)
    before = faults.pids()
    with faults.injected("enclave-kill"):
        expect_error(lambda: client.decrypt(vault_id, ["ssn4"], reason="down"), 503, "EnclaveUnavailable")
    assert client.decrypt(vault_id, ["ssn4"], reason="after").data == {"ssn4": "6789"}
    unchanged_pids(before, faults.pids(), touched={"enclave"})


def test_enclave_restart_under_traffic(stack: EmulatorState, faults: FaultController, table: Table) -> None:
    with VaultClient(stack.api_url) as setup:
        vault_id = setup.create(PII)
    before = faults.pids()
    outcomes: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def traffic() -> None:
        with VaultClient(stack.api_url, timeout=ANSWER_BOUND + 5) as api:
            for _ in range(MAX_REQUESTS_DURING_RESTART):
                if stop.is_set():
                    return
                outcome = timed(lambda: api.decrypt(vault_id, ["first_name"], reason="restart"))
                assert outcome.seconds < ANSWER_BOUND, outcome
                error = outcome.error
                outcomes.append((200, None) if error is None else (error.status, error.code))

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    time.sleep(0.3)
    restart = faults.enable("enclave-restart")
    time.sleep(0.3)
    stop.set()
    worker.join(timeout=60)
    assert not worker.is_alive()

    assert restart["result"]["enclave_pids"] != restart["result"]["previous_pids"]
    assert set(outcomes) <= {(200, None), (503, "EnclaveUnavailable")}, outcomes
    assert (503, "EnclaveUnavailable") in outcomes, "no request reached the restarting enclave"
    # Recovered: the first request after the restart has returned succeeds. (The traffic loop
    # is bounded by count, and a container restart can outlast it.)
    with VaultClient(stack.api_url, timeout=ANSWER_BOUND + 5) as api:
        after = timed(lambda: api.decrypt(vault_id, ["first_name"], reason="restart"))
    assert after.error is None, after
    outcomes.append((200, None))
    documented("enclave-restart", 503, "EnclaveUnavailable")
    # Every attempt is audited with the outcome its caller saw.
    decrypts = [outcome for event, outcome in table.audit(vault_id) if event == "DecryptVault"]
    assert sorted(decrypts) == sorted("Success" if code is None else code for _, code in outcomes)
    unchanged_pids(before, faults.pids(), touched={"enclave"})
    assert faults.active() == {}
