"""Fixtures shared by the CEL engine's unit tests."""

from __future__ import annotations

from dataclasses import replace

import pytest

from unit.cel.support import FIXED_NOW
from vault.enclave.cel import CelEngine
from vault.enclave.cel.limits import CelLimits

#: The default limits but for time: these tests are about what expressions mean, and a busy
#: machine (parallel test workers) can stretch a trivial evaluation past the 2 s request
#: bound. The time budgets have tests of their own, with engines built for them.
SEMANTICS_LIMITS = replace(CelLimits(), max_expression_seconds=30.0, max_seconds=60.0)


@pytest.fixture(scope="module")
def engine() -> CelEngine:
    return CelEngine(limits=SEMANTICS_LIMITS)


@pytest.fixture(scope="module")
def fixed_engine() -> CelEngine:
    return CelEngine(clock=lambda: FIXED_NOW, limits=SEMANTICS_LIMITS)
