"""Schemathesis runs against one target per stack (or the external API): see ``e2e.security.targets``."""

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


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis's lazy schemas (``from_fixture``) read and write ``node._nodeid``, which
    pytest 9 no longer has (``nodeid`` is derived from ``node._id``); give them the attribute.
    They only use it to label operations in reports."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
