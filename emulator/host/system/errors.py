"""The error every system setup step raises, with a message that says what to do."""

from __future__ import annotations


class SystemSetupError(RuntimeError):
    pass
