"""The Swagger UI renders offline in a real browser (headless Chromium) and lists the routes."""

from __future__ import annotations

import subprocess

import pytest

from e2e.chromium import CHROMIUM, headless_command, temporary_profile
from emulator.daemon.state import EmulatorState


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_swagger_ui_lists_every_route(stack: EmulatorState) -> None:
    with temporary_profile() as profile:
        result = subprocess.run(
            headless_command(
                profile, "--virtual-time-budget=10000", "--dump-dom", f"{stack.api_url}/swagger"
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "swagger-ui" in dom and "Loading..." not in dom, dom[:2000]
    assert "Nitro Vault API" in dom
    for route in (
        "/vaults",
        "/vaults/{vault_id}",
        "/vaults/{vault_id}/decrypt",
        "/vaults/decrypt",
        "/vaults/search",
        "/vaults/{vault_id}/rotate",
    ):
        assert f'data-path="{route}"' in dom, route
    for summary in (
        "Create a vault",
        "Get a vault",
        "Update a vault",
        "Delete a vault",
        "Decrypt data from a vault",
    ):
        assert summary in dom, summary
