"""Schemathesis runs against one target per stack (or the external API): see ``e2e.security.targets``."""

from __future__ import annotations

import pytest

# vault_target is registered here by importing it.
from e2e.security.targets import parametrize_targets, vault_target  # noqa: F401


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_targets(metafunc)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis's lazy schemas (``from_fixture``) read and write ``node._nodeid``, which
    pytest 9 no longer has (``nodeid`` is derived from ``node._id``); give them the attribute.
    They only use it to label operations in reports."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
