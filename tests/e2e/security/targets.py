"""What an end-to-end test talks to: an emulator stack it starts, or an API that already runs.

Shared by ``tests/e2e/security``, ``tests/e2e/schemathesis`` and ``tests/property/stack``.
Each of those packages parametrizes its ``vault_target`` fixture with
:func:`parametrize_targets` and builds it with :func:`open_target`.

Which targets:

* ``--vault-api-url URL`` / ``VAULT_API_URL``: one target, that API (for example a
  deployed stage, ``https://{id}.execute-api.{region}.amazonaws.com/v1``). Requests are
  signed with SigV4 when the environment has AWS credentials (see
  :meth:`emulator.tools.client.SigV4Signer.from_environment`). Tests that need the emulator's
  insides (its logs, its backend's table, relaunching its enclave, its IMDS) skip.
* else one emulator per stack: ``--vault-emulator-backend`` (with
  ``--vault-emulator-runtime``) when given on the command line, else
  ``VAULT_E2E_STACKS`` (comma-separated ``backend/runtime``, as ``tests/e2e`` uses), else
  ``VAULT_EMULATOR_BACKEND``, else ``moto/namespace``. A stack that cannot start on this
  machine is skipped, or fails under ``VAULT_E2E_REQUIRE_STACKS=1``, as in ``tests/e2e``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.state import EmulatorState
from emulator.tools.client import SigV4Signer, VaultClient
from emulator.tools.pytest_plugin import API_URL_ENV, BACKEND_ENV, RUNTIME_ENV

STACKS_ENV = "VAULT_E2E_STACKS"
#: ``1``: a stack that cannot start here fails its tests instead of skipping them (``nox -s e2e``).
REQUIRE_ENV = "VAULT_E2E_REQUIRE_STACKS"
#: ``1`` / ``0``: run the enclave and the parent in device mode (``/dev/nsm``, ``AF_VSOCK``
#: through the preload library) or in the Unix-socket mode; unset: the runtime's default.
DEVICES_ENV = "VAULT_E2E_ENCLAVE_DEVICES"
EXTERNAL = "external"
DEFAULT_STACK = "moto/namespace"
FIXTURE = "vault_target"


@dataclass(frozen=True)
class VaultTarget:
    """``name`` is ``backend/runtime`` or ``external``; ``state`` is ``None`` for an external API."""

    name: str
    api_url: str
    signer: SigV4Signer | None = field(default=None, repr=False)
    state: EmulatorState | None = None

    @property
    def external(self) -> bool:
        return self.state is None

    def client(self, **kwargs: Any) -> VaultClient:
        return VaultClient(self.api_url, signer=self.signer, **kwargs)

    def emulator(self, needs: str) -> EmulatorState:
        """The emulator's state, or skip: ``needs`` says what of the emulator the test uses."""
        if self.state is None:
            pytest.skip(f"needs {needs}, which only the emulator exposes; the target is the external API")
        return self.state

    def layout(self, needs: str) -> StateLayout:
        return StateLayout(Path(self.emulator(needs).state_dir))

    def backend_client(self, service: str, needs: str) -> Any:
        """A boto3 client of the emulator's AWS backend (moto or LocalStack), with its test keys."""
        import boto3

        facts = self.emulator(needs).facts
        endpoint = facts["dynamodb_endpoint"] if service == "dynamodb" else facts["backend_endpoint"]
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=facts["region"],
            aws_access_key_id=facts["backend_access_key_id"],
            aws_secret_access_key=facts["backend_secret_access_key"],
        )


def external_api_url(config: pytest.Config) -> str | None:
    value = config.getoption("vault_api_url", default=None) or os.environ.get(API_URL_ENV)
    return str(value).rstrip("/") if value else None


def target_names(config: pytest.Config) -> list[str]:
    if external_api_url(config):
        return [EXTERNAL]
    backend = config.getoption("vault_emulator_backend", default=None)
    runtime = config.getoption("vault_emulator_runtime", default=None) or os.environ.get(RUNTIME_ENV)
    if backend:
        return [f"{backend}/{runtime or 'namespace'}"]
    listed = os.environ.get(STACKS_ENV)
    if listed:
        return [name.strip() for name in listed.split(",") if name.strip()]
    backend = os.environ.get(BACKEND_ENV)
    if backend:
        return [f"{backend}/{runtime or 'namespace'}"]
    return [DEFAULT_STACK]


def parametrize_targets(metafunc: pytest.Metafunc, scope: str = "package") -> None:
    """Run every test that uses ``vault_target`` once per target, sharing a target per ``scope``."""
    if FIXTURE in metafunc.fixturenames:
        names = target_names(metafunc.config)
        metafunc.parametrize(FIXTURE, names, indirect=True, ids=names, scope=scope)  # type: ignore[arg-type]


@contextlib.contextmanager
def open_target(
    name: str, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultTarget]:
    """The target called ``name``: the external API, or an emulator started here and stopped after."""
    if name == EXTERNAL:
        url = external_api_url(config)
        assert url is not None
        yield VaultTarget(name, url, SigV4Signer.from_environment(url))
        return
    with running_stack(name, tmp_path_factory) as state:
        principal = state.facts.get("sigv4_principal")
        signer = (
            SigV4Signer(principal["access_key_id"], principal["secret_access_key"], state.facts["region"])
            if principal
            else None
        )
        yield VaultTarget(name, state.api_url, signer, state)


def enclave_devices() -> bool | None:
    """``DEVICES_ENV`` as :class:`EmulatorConfig` takes it (``None``: the runtime's default)."""
    value = os.environ.get(DEVICES_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise pytest.UsageError(f"{DEVICES_ENV} must be 0 or 1, not {value!r}")
    return None if not value else value == "1"


@contextlib.contextmanager
def running_stack(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorState]:
    """An emulator for stack ``name`` (``backend/runtime``), up for the block, down after.

    A stack whose prerequisites this machine lacks is skipped, unless ``REQUIRE_ENV`` is 1.
    """
    from emulator.daemon import lifecycle

    backend, _, runtime = name.partition("/")
    emulator_config = EmulatorConfig(
        state_dir=tmp_path_factory.mktemp(f"emulator-{backend}-{runtime or 'namespace'}"),
        backend=backend,  # type: ignore[arg-type]
        enclave_runtime=(runtime or "namespace"),  # type: ignore[arg-type]
        port=0,
        enclave_devices=enclave_devices(),
    )
    try:
        state = lifecycle.up(emulator_config)
    except lifecycle.StartupFailed as exc:
        unavailable = "Unavailable" in str(exc) or "not available" in str(exc)
        if unavailable and os.environ.get(REQUIRE_ENV) != "1":
            pytest.skip(f"{name} cannot run here: {str(exc).splitlines()[0]}")
        raise
    try:
        yield state
    finally:
        lifecycle.down(emulator_config.layout)


@pytest.fixture(scope="package")
def vault_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultTarget]:
    """The target of one parametrized stack, for the test package whose conftest imports this."""
    with open_target(request.param, request.config, tmp_path_factory) as target:
        yield target
