"""pytest plugin: the vault emulator as fixtures.

* ``vault_emulator`` (session): starts the emulator once per test session in a
  temporary state directory and stops it at the end; its value is the running
  emulator's state (API URL, backend endpoints, table, key ARN).
* ``vault_api_url``: the API's base URL (``.../v1``).
* ``vault_client``: a :class:`emulator.tools.client.VaultClient` for that URL.

Options: ``--vault-emulator-backend`` (or ``VAULT_EMULATOR_BACKEND``; default
``moto``), ``--vault-emulator-runtime`` (or ``VAULT_EMULATOR_RUNTIME``; default
``namespace``), and ``--vault-api-url`` (or ``VAULT_API_URL``) to run the same tests
against an API that is already running, e.g. a deployed stack, instead of starting
one.

Installed through the ``pytest11`` entry point, so it loads in every pytest run of an
environment that has the package: until one of its fixtures is used it imports
nothing beyond pytest and starts nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from emulator.daemon.state import EmulatorState
    from emulator.tools.client import VaultClient

BACKEND_ENV = "VAULT_EMULATOR_BACKEND"
RUNTIME_ENV = "VAULT_EMULATOR_RUNTIME"
API_URL_ENV = "VAULT_API_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vault-emulator", "nitro-vault emulator")
    group.addoption(
        "--vault-emulator-backend",
        dest="vault_emulator_backend",
        default=None,
        help="AWS backend for the vault_emulator fixture: moto, localstack, localstack-container "
        f"(env {BACKEND_ENV})",
    )
    group.addoption(
        "--vault-emulator-runtime",
        dest="vault_emulator_runtime",
        default=None,
        help=f"enclave runtime for the vault_emulator fixture: namespace or container (env {RUNTIME_ENV})",
    )
    group.addoption(
        "--vault-api-url",
        dest="vault_api_url",
        default=None,
        help=f"use this running API instead of starting the emulator (env {API_URL_ENV})",
    )


def _option(config: pytest.Config, name: str, env: str, default: str | None) -> str | None:
    value = config.getoption(name, default=None)
    return value if value else os.environ.get(env, default)


@pytest.fixture(scope="session")
def vault_emulator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorState]:
    """The running emulator (started for the session, stopped afterwards)."""
    # The plugin loads in every pytest run of the environment; the emulator's modules
    # (about 1.8 s of imports, moto among them) load only when this fixture is used.
    from emulator.daemon import lifecycle
    from emulator.daemon.config import EmulatorConfig  # lazily too, as above

    if _option(request.config, "vault_api_url", API_URL_ENV, None):
        pytest.skip("vault_emulator is not available when testing an external API (--vault-api-url)")
    config = EmulatorConfig(
        state_dir=tmp_path_factory.mktemp("vault-emulator"),
        backend=_option(request.config, "vault_emulator_backend", BACKEND_ENV, "moto"),  # type: ignore[arg-type]
        enclave_runtime=_option(request.config, "vault_emulator_runtime", RUNTIME_ENV, "namespace"),  # type: ignore[arg-type]
        port=0,
    )
    state = lifecycle.up(config)
    try:
        yield state
    finally:
        lifecycle.down(config.layout)


@pytest.fixture(scope="session")
def vault_api_url(request: pytest.FixtureRequest) -> str:
    """Base URL of the vault API (``.../v1``)."""
    external = _option(request.config, "vault_api_url", API_URL_ENV, None)
    if external:
        return external.rstrip("/")
    state: EmulatorState = request.getfixturevalue("vault_emulator")
    return state.api_url


@pytest.fixture
def vault_client(vault_api_url: str) -> Iterator[VaultClient]:
    """An HTTP client for the vault API."""
    # Loaded on first use, like the emulator (see vault_emulator).
    from emulator.tools.client import VaultClient

    client = VaultClient(vault_api_url)
    try:
        yield client
    finally:
        client.close()
