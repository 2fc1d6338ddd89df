"""The Swagger UI renders offline in a real browser (headless Chromium) and lists the routes."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from emulator.daemon.state import EmulatorState

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_swagger_ui_lists_every_route(stack: EmulatorState) -> None:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"{stack.api_url}/swagger",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "swagger-ui" in dom and "Loading..." not in dom, dom[:2000]
    assert "Nitro Vault API" in dom
    for route in ("/vaults", "/vaults/{vault_id}", "/vaults/{vault_id}/decrypt"):
        assert f'data-path="{route}"' in dom, route
    for summary in (
        "Create a vault",
        "Get a vault",
        "Update a vault",
        "Delete a vault",
        "Decrypt data from a vault",
    ):
        assert summary in dom, summary
