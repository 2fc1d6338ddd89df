"""KMS throttles or slows down: creates and decrypts fail cleanly or absorb it; nothing is half-written."""

from __future__ import annotations

from emulator.faults.catalogue import FaultController
from emulator.tools.client import VaultApiError, VaultClient

from .support import ANSWER_BOUND, PII, Table, documented, expect_error, timed, unchanged_pids

KEY_PAIR = "GenerateDataKeyPairWithoutPlaintext"


def test_throttled_key_generation_fails_the_create_and_writes_nothing(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    before, counts = faults.pids(), table.counts()
    with faults.injected("kms-throttle", operation=KEY_PAIR):
        expect_error(lambda: client.create(PII), 502, "KeyGenerationFailed")
        # Decrypts do not generate keys.
        assert table.counts() == counts
    documented("kms-throttle", 502, "KeyGenerationFailed")
    assert client.get(client.create(PII), ["first_name"]) == {"first_name": True}
    unchanged_pids(before, faults.pids(), touched=set())


def test_a_single_throttle_is_absorbed_by_the_retry(client: VaultClient, faults: FaultController) -> None:
    with faults.injected("kms-throttle", operation=KEY_PAIR, count=1):
        vault_id = client.create(PII)
    assert client.decrypt(vault_id, ["first_name"], reason="retried").data == {"first_name": "Ada"}


def test_throttled_decrypt_is_a_clear_5xx_and_audited(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    vault_id = client.create(PII)
    item, audit = table.vault(vault_id), table.audit(vault_id)
    with faults.injected("kms-throttle", operation="Decrypt"):
        outcome = timed(lambda: client.decrypt(vault_id, ["ssn4"], reason="throttled"))
    error = outcome.error
    assert isinstance(error, VaultApiError), outcome
    # Which one depends on the enclave's retry back-off (random) against the parent's read budget.
    assert (error.status, error.code) in {(502, "EnclaveDecryptFailed"), (504, "EnclaveTimeout")}, error
    documented("kms-throttle", error.status, error.code)
    if error.code == "EnclaveDecryptFailed":
        assert error.body["enclaveCode"] == "KeyDecryptFailed", error.body
        assert "data" not in error.body
    assert outcome.seconds < ANSWER_BOUND
    assert table.vault(vault_id) == item
    # The enclave took the request and went silent: whether it revealed anything is not known.
    outcome_recorded = "Unknown" if error.code == "EnclaveTimeout" else error.code
    assert table.audit(vault_id) == [*audit, ("DecryptVault", outcome_recorded)]
    assert client.decrypt(vault_id, ["ssn4"], reason="after").data == {"ssn4": "6789"}


def test_kms_latency_beyond_the_parent_budget(client: VaultClient, faults: FaultController) -> None:
    vault_id = client.create(PII)
    with faults.injected("kms-latency", ms=3000, operation="Decrypt"):
        # The enclave is alive and took the request: a timeout, not "no enclave available".
        expect_error(lambda: client.decrypt(vault_id, ["first_name"], reason="slow"), 504, "EnclaveTimeout")
    documented("kms-latency", 504, "EnclaveTimeout")
    assert client.decrypt(vault_id, ["first_name"], reason="fast").data == {"first_name": "Ada"}


def test_kms_latency_beyond_the_api_budget_fails_the_create_cleanly(
    client: VaultClient, faults: FaultController, table: Table
) -> None:
    counts = table.counts()
    with faults.injected("kms-latency", ms=3500, operation=KEY_PAIR):
        expect_error(lambda: client.create(PII), 502, "KeyGenerationFailed")
    documented("kms-latency", 502, "KeyGenerationFailed")
    assert table.counts() == counts


def test_kms_latency_within_budgets_is_absorbed(client: VaultClient, faults: FaultController) -> None:
    with faults.injected("kms-latency", ms=300):
        created = timed(lambda: client.create(PII))
        assert created.error is None and created.seconds >= 0.3
        decrypted = timed(lambda: client.decrypt(created.value, ["ssn4"], reason="slow"))
        assert decrypted.error is None and decrypted.value.data == {"ssn4": "6789"}
        assert decrypted.seconds >= 0.3
    documented("kms-latency", 200, None)
