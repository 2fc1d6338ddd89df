"""Security invariants run against one target per stack (or the external API): see ``targets``."""

from __future__ import annotations

import pytest

# vault_target is registered here by importing it.
from e2e.security.targets import parametrize_targets, vault_target  # noqa: F401


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_targets(metafunc)
