"""Fixtures shared by the CEL engine's unit tests."""

from __future__ import annotations

import pytest

from tests.support.cel_limits import SEMANTICS_LIMITS
from unit.cel.support import FIXED_NOW
from vault.enclave.cel import CelEngine


@pytest.fixture(scope="module")
def engine() -> CelEngine:
    return CelEngine(limits=SEMANTICS_LIMITS)


@pytest.fixture(scope="module")
def fixed_engine() -> CelEngine:
    return CelEngine(clock=lambda: FIXED_NOW, limits=SEMANTICS_LIMITS)
