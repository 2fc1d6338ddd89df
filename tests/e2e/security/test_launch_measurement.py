"""Every launch measures what it launches, so a changed image cannot decrypt after a restart.

The attack: change one byte of the enclave image in the emulator's state directory and
restart the enclave (``enclave-restart``, or ``enclave-kill`` on and off). The relaunched
enclave is measured again: its PCR0 is the changed image's, which the key policy does not
name, so KMS refuses it and the API answers 502 ``EnclaveDecryptFailed`` with the enclave's
``AttestationFailed``; no response, log or file holds the plaintext. With the byte restored,
the next restart decrypts again.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.security.targets import VaultTarget
from e2e.security.workload import RecordingSession, encodings_of_text
from emulator.faults.catalogue import FaultController
from emulator.nitro.measure import measure_image
from emulator.tools.client import VaultApiError, VaultClient

#: A module the enclave runs at start; one letter of its docstring changes case.
CHANGED_MODULE = Path("vault") / "enclave" / "__main__.py"
#: Files larger than this are not scanned (none of the emulator's own is near it).
MAX_SCANNED_BYTES = 64 * 1024 * 1024
#: A relaunch waits for the enclave to listen; generous on a busy machine.
CONTROL_TIMEOUT = 300.0


@pytest.fixture
def faults(vault_target: VaultTarget) -> FaultController:
    return FaultController(vault_target.layout("the emulator's faults"), timeout=CONTROL_TIMEOUT)


@pytest.fixture
def recorded(vault_target: VaultTarget) -> Iterator[tuple[VaultClient, RecordingSession]]:
    session = RecordingSession()
    with vault_target.client(session=session) as client:
        yield client, session


def docstring_letter(source: bytes) -> int:
    """The offset of the first letter of the module docstring: flipping its case keeps it valid Python."""
    match = re.search(rb'"""[^A-Za-z]*([A-Za-z])', source)
    assert match is not None, "the module has no docstring to change"
    return match.start(1)


@contextlib.contextmanager
def one_byte_changed(path: Path) -> Iterator[None]:
    original = path.read_bytes()
    changed = bytearray(original)
    changed[docstring_letter(original)] ^= 0x20
    path.write_bytes(bytes(changed))
    try:
        yield
    finally:
        path.write_bytes(original)


def running_image(faults: FaultController) -> Path:
    """The image directory in the state directory that the running enclave was launched from."""
    facts = faults.status().facts
    assert facts["running_image_dir"] == facts["image_dir"], "another test left a changed image running"
    return Path(str(facts["running_image_dir"]))


def leaks_in_files(root: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """Files below ``root`` holding any of ``needles`` (sockets and other non-files skipped)."""
    found: dict[str, list[bytes]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_SCANNED_BYTES:
            continue
        data = path.read_bytes()
        hits = [needle for needle in needles if needle in data]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def assert_refused(client: VaultClient, vault_id: str, canary: str) -> None:
    with pytest.raises(VaultApiError) as refused:
        client.decrypt(vault_id, ["first_name"], reason="changed image")
    assert refused.value.status == 502
    assert refused.value.code == "EnclaveDecryptFailed"
    assert refused.value.body.get("enclaveCode") == "AttestationFailed"
    assert "data" not in refused.value.body
    assert canary not in str(refused.value.body)


def restart(faults: FaultController, how: str) -> dict[str, Any]:
    """Relaunch the enclave the way ``how`` says; the relaunch's result (``pcr0``, ``policy_pcr0``)."""
    if how == "enclave-restart":
        result: dict[str, Any] = faults.enable("enclave-restart")["result"]
        return result
    faults.enable("enclave-kill")
    result = faults.disable("enclave-kill")["result"]
    return result


@pytest.mark.parametrize("how", ["enclave-restart", "enclave-kill"])
def test_a_changed_byte_in_the_running_image_is_refused_after_a_restart(
    vault_target: VaultTarget,
    faults: FaultController,
    recorded: tuple[VaultClient, RecordingSession],
    how: str,
) -> None:
    client, session = recorded
    state_dir = Path(vault_target.emulator("the emulator's enclave image").state_dir)
    canary = f"Flipbyte{secrets.token_hex(8)}"
    vault_id = client.create({"first_name": canary})
    assert client.decrypt(vault_id, ["first_name"], reason="before").data == {"first_name": canary}
    image_dir = running_image(faults)
    policy_pcr0 = measure_image(image_dir).pcr0

    with one_byte_changed(image_dir / CHANGED_MODULE):
        changed_pcr0 = measure_image(image_dir).pcr0
        assert changed_pcr0 != policy_pcr0
        first_refused = len(session.responses)
        relaunched = restart(faults, how)
        assert (relaunched["pcr0"], relaunched["policy_pcr0"]) == (changed_pcr0, policy_pcr0)
        assert faults.status().facts["running_pcr0"] == changed_pcr0
        assert_refused(client, vault_id, canary)
        assert_refused(client, vault_id, canary)
        refused_responses = session.responses[first_refused:]
        trail = client.audit_trail(vault_id)
        assert [(e.event, e.outcome) for e in trail[-2:]] == [("DecryptVault", "EnclaveDecryptFailed")] * 2

    needles = encodings_of_text(canary)
    assert refused_responses and all(
        not any(needle in response.text for needle in needles) for response in refused_responses
    )
    # Logs, the table's files, the image copies, the state file: the plaintext is in none of them.
    assert leaks_in_files(state_dir, [needle.encode() for needle in needles]) == {}

    restored = restart(faults, "enclave-restart")
    assert restored["pcr0"] == restored["policy_pcr0"] == policy_pcr0
    again = client.decrypt(vault_id, ["first_name"], reason="restored")
    assert (again.data, again.errors) == ({"first_name": canary}, [])
