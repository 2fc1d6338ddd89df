"""Tier artifacts built into empty directories, shared by the tests of this package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private cache of dependency sets: the tests build theirs from this environment once."""
    return tmp_path_factory.mktemp("tier-deps")
