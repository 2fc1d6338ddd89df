"""The pytest plugin is inert until its fixtures are used."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_plugin_loads_without_importing_the_emulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_nothing_heavy_is_imported():
            names = (
                "emulator.daemon.lifecycle",
                "emulator.daemon.supervisor",
                "emulator.tools.client",
                "moto",
                "boto3",
            )
            heavy = [m for m in names if m in sys.modules]
            assert heavy == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_options_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(
        ["*--vault-emulator-backend*", "*--vault-emulator-runtime*", "*--vault-api-url*"]
    )


def test_an_external_api_url_replaces_the_emulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_url(vault_api_url, vault_client):
            assert vault_api_url == "http://127.0.0.1:9/v1"
            assert vault_client.base_url == vault_api_url
            assert "emulator.daemon.lifecycle" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--vault-api-url", "http://127.0.0.1:9/v1/"
    )
    result.assert_outcomes(passed=1)


def test_the_pytest_extra_brings_what_the_plugin_needs() -> None:
    project = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text(encoding="utf-8"))
    extra = project["project"]["optional-dependencies"]["pytest"]
    names = {re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0] for requirement in extra}
    # pytest to load the plugin; the emulator (with requests, moto, ...) that its fixtures start.
    assert {"pytest", "nitro-vault"} <= names
    assert "nitro-vault[emulator]" in extra
    plugins = project["project"]["entry-points"]["pytest11"]
    assert plugins == {"vault_emulator": "emulator.tools.pytest_plugin"}
