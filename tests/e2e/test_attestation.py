"""An enclave whose code changed after measuring cannot obtain a vault's key from KMS."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.daemon.config import StateLayout
from emulator.daemon.control import control_request
from emulator.daemon.state import EmulatorState
from emulator.tools.client import VaultApiError, VaultClient
from emulator.tools.demo import CHANGED_CODE


def test_changed_enclave_code_is_refused_and_the_measured_image_works_again(
    client: VaultClient, stack: EmulatorState
) -> None:
    layout = StateLayout(Path(stack.state_dir))
    vault_id = client.create({"first_name": "Ada"})
    assert client.decrypt(vault_id, ["first_name"], reason="before").data == {"first_name": "Ada"}

    reply = control_request(layout, {"op": "relaunch-enclave", "overrides": CHANGED_CODE}, timeout=300)
    assert reply["ok"], reply
    assert reply["result"]["pcr0"] != reply["result"]["policy_pcr0"]
    try:
        with pytest.raises(VaultApiError) as refused:
            client.decrypt(vault_id, ["first_name"], reason="changed code")
        assert refused.value.status >= 500
        assert refused.value.code in ("EnclaveDecryptFailed", "AttestationFailed")
    finally:
        restored = control_request(layout, {"op": "relaunch-enclave", "overrides": {}}, timeout=300)
        assert restored["ok"], restored
    assert client.decrypt(vault_id, ["first_name"], reason="after").data == {"first_name": "Ada"}
