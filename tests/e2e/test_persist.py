"""``up --persist`` via the CLI: vaults, audit and keys survive ``down`` and ``up``; ``reset`` clears them.

Runs once per stack of ``VAULT_E2E_STACKS`` (as the other end-to-end tests); a stack whose
prerequisites are missing is skipped unless ``VAULT_E2E_REQUIRE_STACKS=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.conftest import stacks
from e2e.security.targets import REQUIRE_ENV
from emulator.daemon.state import EmulatorState, read_state
from emulator.tools.client import VaultApiError, VaultClient

PII = {"first_name": "Persisted", "last_name": "User", "email": "persist@example.com", "ssn9": "123456789"}
FIELDS = ["first_name", "last_name", "email", "ssn4"]


def cli(state_dir: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def up(state_dir: Path, stack: str, *extra: str) -> EmulatorState:
    backend, _, runtime = stack.partition("/")
    result = cli(
        state_dir,
        "up",
        "--backend",
        backend,
        "--enclave-runtime",
        runtime or "namespace",
        "--port",
        "0",
        *extra,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "Unavailable" in output and os.environ.get(REQUIRE_ENV) != "1":
        pytest.skip(f"{stack} cannot run here: {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, output
    state = read_state(state_dir / "state.json")
    assert state is not None and state.phase == "running", output
    return state


def down(state_dir: Path) -> None:
    result = cli(state_dir, "down", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stack", stacks())
def test_vaults_survive_down_and_up_until_reset(stack: str, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state = up(state_dir, stack, "--persist")
    try:
        with VaultClient(state.api_url) as client:
            vault_id = client.create(PII)
            before = client.decrypt(vault_id, FIELDS, reason="before restart")
            trail_before = [entry.event for entry in client.audit_trail(vault_id)]
        key_arn = state.facts["key_arn"]
    finally:
        down(state_dir)
    assert before.errors == [] and before.data["first_name"] == "Persisted"

    state = up(state_dir, stack, "--persist")
    try:
        # The same key (provisioning reused it), and the vault it encrypted decrypts the same.
        assert state.facts["key_arn"] == key_arn
        with VaultClient(state.api_url) as client:
            after = client.decrypt(vault_id, FIELDS, reason="after restart")
            trail_after = [entry.event for entry in client.audit_trail(vault_id)]
        assert after.errors == [] and after.data == before.data
        assert trail_after[: len(trail_before)] == trail_before
        assert trail_after[len(trail_before) :] == ["DecryptVault"]

        running = cli(state_dir, "reset")
        assert running.returncode == 1 and "is running" in running.stderr, running.stdout + running.stderr
    finally:
        down(state_dir)

    reset = cli(state_dir, "reset")
    assert reset.returncode == 0 and "removed" in reset.stdout, reset.stdout + reset.stderr

    state = up(state_dir, stack, "--persist")
    try:
        with VaultClient(state.api_url) as client, pytest.raises(VaultApiError) as gone:
            client.get(vault_id, ["first_name"])
        assert gone.value.status == 404
    finally:
        down(state_dir)


@pytest.mark.parametrize("stack", stacks()[:1])
def test_without_persist_nothing_survives(stack: str, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state = up(state_dir, stack)
    try:
        with VaultClient(state.api_url) as client:
            vault_id = client.create(PII)
    finally:
        down(state_dir)
    state = up(state_dir, stack)
    try:
        with VaultClient(state.api_url) as client, pytest.raises(VaultApiError) as gone:
            client.get(vault_id, ["first_name"])
        assert gone.value.status == 404
    finally:
        down(state_dir)
