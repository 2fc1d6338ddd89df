"""End-to-end fixtures: whole emulators, one per (backend, enclave runtime) under test.

Which combinations run: ``VAULT_E2E_STACKS`` (comma-separated ``backend/runtime``,
default ``moto/namespace``; CI adds ``localstack/namespace`` and
``moto/container``). A combination whose prerequisites are missing on this machine
(no LocalStack installation, no container engine) is skipped with the reason, unless
``VAULT_E2E_REQUIRE_STACKS=1`` (set by ``nox -s e2e``), where it fails instead: a stack
that was asked for and did not run is never counted as covered.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.security.targets import STACKS_ENV, running_stack
from emulator.daemon.state import EmulatorState
from emulator.tools.client import VaultClient

DEFAULT_STACKS = "moto/namespace"


def stacks() -> list[str]:
    return [s.strip() for s in os.environ.get(STACKS_ENV, DEFAULT_STACKS).split(",") if s.strip()]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", params=stacks())
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorState]:
    with running_stack(request.param, tmp_path_factory) as state:
        yield state


@pytest.fixture
def client(stack: EmulatorState) -> Iterator[VaultClient]:
    with VaultClient(stack.api_url) as api:
        yield api
