"""The pytest plugin as a user's project meets it: a real emulator, three tests, per-test isolation.

A small project is run in a subprocess (pytester) with the installed plugin: the session
fixture starts the emulator on moto, ``vault_clean`` empties the vault table before a test
while the keys stay (a vault created after a clean still decrypts). The plugin's fixed
cost (setup of the first test + teardown of the last) is printed; ``nox -s bench`` holds
the target (``benchmarks/startup.py``), not this test.
"""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

PROJECT = """
import requests


def test_first_creates_a_vault(vault_client, vault_emulator):
    vault_id = vault_client.create({"first_name": "Ada", "dob": "1985-12-10"})
    with open("first-vault-id", "w") as handle:
        handle.write(vault_id)


def test_a_clean_table_has_no_vault_of_an_earlier_test(vault_clean, vault_client, vault_api_url):
    earlier = open("first-vault-id").read()
    assert requests.get(f"{vault_api_url}/vaults/{earlier}", timeout=30).status_code == 404
    vault_id = vault_client.create({"first_name": "Grace", "dob": "1906-12-09"})
    result = vault_client.decrypt(vault_id, ["first_name"], reason="plugin test")
    assert result.data == {"first_name": "Grace"}


def test_keys_survive_a_clean(vault_clean, vault_client):
    vault_id = vault_client.create({"first_name": "Edsger"})
    result = vault_client.decrypt(
        vault_id, ["first_name"], reason="plugin test", expressions={"n": "size(first_name)"}
    )
    assert result.data == {"first_name": "Edsger", "n": 6}
"""


def test_a_three_test_project_with_per_test_isolation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_project=PROJECT)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:randomly", "--durations=0", "-vv", timeout=600
    )
    result.assert_outcomes(passed=3)
    durations = "\n".join(result.outlines)
    setup = re.search(r"([0-9.]+)s setup\s+test_project.py::test_first_creates_a_vault", durations)
    teardown = re.search(r"([0-9.]+)s teardown\s+test_project.py::test_keys_survive_a_clean", durations)
    clean = re.search(r"([0-9.]+)s setup\s+test_project.py::test_keys_survive_a_clean", durations)
    if setup and teardown and clean:
        fixed = float(setup.group(1)) + float(teardown.group(1))
        print(
            f"plugin fixed cost {fixed:.2f} s (up {setup.group(1)} s, down {teardown.group(1)} s); "
            f"vault_clean setup {float(clean.group(1)) * 1000:.0f} ms"
        )
