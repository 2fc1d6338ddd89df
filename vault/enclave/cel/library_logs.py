"""Keep cel-python's and lark's log records away from every handler.

cel-python logs evaluated operands and whole activations (every variable's value) at
DEBUG, a function's arguments at ERROR when it fails unexpectedly, and created
messages at INFO. Those operands are decrypted fields, so level settings are not
enough: a later ``setLevel`` (``vault.common.logs`` holds these loggers at WARNING)
would let the ERROR and INFO records through. Instead the two library loggers stop
propagating and get a ``NullHandler``, so no record of theirs reaches the root
handlers, whatever levels are configured afterwards, and Python's last-resort stderr
handler is not used either. The level is also raised above CRITICAL so that records
are not even created.
"""

from __future__ import annotations

import logging

LIBRARY_LOGGERS = ("celpy", "lark")


def isolate_library_loggers() -> None:
    """Idempotent; called by every ``CelEngine`` before any expression is touched."""
    for name in LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.propagate = False
        if not any(isinstance(handler, logging.NullHandler) for handler in library_logger.handlers):
            library_logger.addHandler(logging.NullHandler())
        library_logger.setLevel(logging.CRITICAL + 1)
