"""Security invariants run against one target per stack (or the external API): see ``targets``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.security.targets import VaultTarget, open_target, parametrize_targets


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_targets(metafunc)


@pytest.fixture(scope="package")
def vault_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VaultTarget]:
    with open_target(request.param, request.config, tmp_path_factory) as target:
        yield target
