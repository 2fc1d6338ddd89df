"""The stateful property test of the whole stack: one target per backend (see ``e2e.security.targets``).

These tests start an emulator (or use ``--vault-api-url``), so they are end-to-end tests
(marker ``e2e``) and run only when asked for: with ``-m e2e`` (any ``-m`` expression is
honoured) or when this directory or one of its files is named on the command line. A
plain ``pytest`` or ``pytest tests/property`` (the fast ``tests`` session) leaves them out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# vault_target is registered here by importing it.
from e2e.security.targets import parametrize_targets, vault_target  # noqa: F401

HERE = Path(__file__).parent.resolve()


def _named_on_command_line(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0])
        path = (path if path.is_absolute() else Path(config.invocation_params.dir) / path).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    for item in mine:
        item.add_marker(pytest.mark.e2e)
    if mine and not config.option.markexpr and not _named_on_command_line(config):
        config.hook.pytest_deselected(items=mine)
        chosen = {id(item) for item in mine}
        items[:] = [item for item in items if id(item) not in chosen]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_targets(metafunc)
