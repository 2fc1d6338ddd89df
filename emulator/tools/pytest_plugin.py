"""pytest plugin: the vault emulator as fixtures.

* ``vault_emulator`` (session): starts the emulator once per test session in a
  temporary state directory and stops it at the end; its value is the running
  emulator's state (API URL, backend endpoints, table, key ARN).
* ``vault_api_url``: the API's base URL (``.../v1``).
* ``vault_client``: a :class:`emulator.tools.client.VaultClient` for that URL.
* ``vault_clean``: per-test isolation; the session's emulator with its vault table
  emptied of vaults and audit records before the test (see :mod:`emulator.tools.isolation`).

Generic fixtures, for any enclave application (their API: :mod:`emulator.tools.enclave_fixtures`):

* ``nitro_test_pki`` (session): a test PKI, the root that attestation documents chain to.
* ``nsm``: an :class:`~emulator.tools.enclave_fixtures.EmulatedNsm` in this process
  (``nsm.attest(measurements, public_key=...)`` signs a document).
* ``attested_kms``: an :class:`~emulator.tools.enclave_fixtures.AttestedKms`, the KMS front
  over moto trusting ``nsm``'s root (``create_key(measurements)``, ``client``, ``recipient``).
* ``nitro_enclave`` (module): a :class:`~emulator.tools.enclave_fixtures.RunningEnclave`
  started from the spec that ``nitro_enclave_spec`` returns (override it, or parametrize
  ``nitro_enclave`` indirectly with a spec path, or pass ``--nitro-enclave-spec``).

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
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from emulator.daemon.state import EmulatorState
    from emulator.nitro.pki import TestPki
    from emulator.tools.client import VaultClient
    from emulator.tools.enclave_fixtures import AttestedKms, EmulatedNsm, RunningEnclave

BACKEND_ENV = "VAULT_EMULATOR_BACKEND"
RUNTIME_ENV = "VAULT_EMULATOR_RUNTIME"
API_URL_ENV = "VAULT_API_URL"
SPEC_ENV = "NITRO_ENCLAVE_SPEC"


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
    group.addoption(
        "--nitro-enclave-spec",
        dest="nitro_enclave_spec",
        default=None,
        help=f"the enclave spec (TOML) the nitro_enclave fixture starts (env {SPEC_ENV})",
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
def vault_clean(vault_emulator: EmulatorState) -> EmulatorState:
    """The session's emulator with an empty vault table: no vaults, no audit records.

    Per-test isolation without a new emulator (tens of milliseconds on moto): keys, PKI,
    enclave and deployment-wide configuration stay. Use it with ``vault_client``.
    """
    from emulator.tools.isolation import clear_vault_data  # boto3: loaded on first use

    clear_vault_data(vault_emulator.facts)
    return vault_emulator


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


# -- generic fixtures: any enclave application ----------------------------------------------
# Their modules (moto, boto3, the emulator) load only when one of them is requested.


@pytest.fixture(scope="session")
def nitro_test_pki() -> TestPki:
    """A test PKI (root, intermediates): what the ``nsm`` fixture signs with."""
    from emulator.nitro.pki import TestPki  # loaded on first use (see vault_emulator)

    return TestPki.create()


@pytest.fixture
def nsm(nitro_test_pki: TestPki) -> Iterator[EmulatedNsm]:
    """The emulated NSM in this process: ``nsm.attest(measurements, public_key=...)``."""
    from emulator.tools.enclave_fixtures import emulated_nsm  # loaded on first use

    with emulated_nsm(nitro_test_pki) as emulated:
        yield emulated


@pytest.fixture(scope="session")
def nitro_moto_url() -> Iterator[str]:
    """A moto server on loopback (the backend of ``attested_kms``), one per session."""
    from emulator.tools.enclave_fixtures import moto_server  # loaded on first use

    with moto_server() as url:
        yield url


@pytest.fixture
def attested_kms(nsm: EmulatedNsm, nitro_moto_url: str) -> Iterator[AttestedKms]:
    """The KMS attestation front over moto, trusting ``nsm``'s root."""
    from emulator.tools.enclave_fixtures import attested_kms as start  # loaded on first use

    with start(nsm, nitro_moto_url) as kms:
        yield kms


@pytest.fixture(scope="module")
def nitro_enclave_spec(request: pytest.FixtureRequest) -> Path:
    """The spec ``nitro_enclave`` starts: ``--nitro-enclave-spec`` or ``$NITRO_ENCLAVE_SPEC``; override it."""
    value = _option(request.config, "nitro_enclave_spec", SPEC_ENV, None)
    if not value:
        raise pytest.UsageError(
            "nitro_enclave needs a spec: override the nitro_enclave_spec fixture, parametrize "
            f"nitro_enclave indirectly, or pass --nitro-enclave-spec (env {SPEC_ENV})"
        )
    return Path(value)


@pytest.fixture(scope="module")
def nitro_enclave(request: pytest.FixtureRequest) -> Iterator[RunningEnclave]:
    """The spec's enclave, run by the emulator in its sandbox (one per module)."""
    from emulator.tools.enclave_fixtures import short_directory, start_nitro_enclave  # first use

    param = getattr(request, "param", None)
    spec = Path(param) if param is not None else request.getfixturevalue("nitro_enclave_spec")
    state_dir = short_directory("nitro-enclave-")
    try:
        with start_nitro_enclave(spec, state_dir) as running:
            yield running
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
