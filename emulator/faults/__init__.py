"""Faults a running emulator can be put through: the catalogue, the daemon's injector, the hooks.

``FaultController`` is what tests and tools use (see :mod:`emulator.faults.catalogue`).
"""

from emulator.faults.catalogue import (
    CATALOGUE,
    Answer,
    FaultController,
    FaultError,
    FaultSpec,
    Outcome,
    describe,
)
from emulator.faults.hooks import FaultHooks

__all__ = [
    "CATALOGUE",
    "Answer",
    "FaultController",
    "FaultError",
    "FaultHooks",
    "FaultSpec",
    "Outcome",
    "describe",
]
