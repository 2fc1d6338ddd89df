"""Fault fixtures: a controller for the session's emulator that leaves no fault behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulator.daemon.state import EmulatorState
from emulator.faults.catalogue import FaultController

from .support import Table, wait_healthy


@pytest.fixture
def faults(stack: EmulatorState) -> Iterator[FaultController]:
    controller = FaultController(stack)
    wait_healthy(controller)
    try:
        yield controller
    finally:
        # Whatever a test left on is switched off, and the next test starts on a healthy emulator.
        controller.clear()
        wait_healthy(controller)


@pytest.fixture
def table(stack: EmulatorState) -> Table:
    return Table(stack)
