"""Key states as KMS honours them, read from the backend with a short cache.

moto keeps a key's state (``DescribeKey`` reports it) but ignores it: it decrypts with a
disabled key or one pending deletion. The front therefore checks the state itself on
every operation it serves for a key, as AWS's key-state table says
(``DisabledException: <key ARN> is disabled.``, ``KMSInvalidStateException: <key ARN> is
pending deletion.``, ...). States are read with ``DescribeKey`` and kept for
:data:`DEFAULT_TTL` seconds; the operations that change a state invalidate the cache when
they pass through the front, so a change made through the front is seen at once and one
made behind it (on the backend's own port) within the TTL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from emulator.aws.kms.errors import (
    DISABLED,
    KEY_STATE,
    NOT_PENDING_DELETION,
    PENDING_DELETION,
    PENDING_IMPORT,
    KmsError,
)

#: How long a key's state is trusted without asking the backend again.
DEFAULT_TTL = 2.0
_MAX_ENTRIES = 1024


class KeyUse(Enum):
    """Which key states an operation accepts (the columns of AWS's key-state table)."""

    #: Cryptographic operations and grants: ``Enabled`` only.
    CRYPTOGRAPHIC = "cryptographic"
    #: Management that a key pending deletion refuses (aliases, tags, description, enable/disable).
    NOT_PENDING_DELETION = "not-pending-deletion"
    #: ``CancelKeyDeletion``: only a key pending deletion.
    PENDING_DELETION_ONLY = "pending-deletion-only"
    #: Reading metadata and policies, listing grants: every state.
    ANY = "any"


@dataclass(frozen=True)
class KeyInfo:
    """A key as the backend describes it; ``state`` is ``None`` when the backend would not say."""

    arn: str
    state: str | None
    #: ``KeyUsage`` and ``KeySpec`` as the backend describes them (``None``: not said).
    usage: str | None = None
    spec: str | None = None


def check_state(info: KeyInfo, use: KeyUse) -> None:
    """Refuse as KMS does when ``info``'s state does not allow ``use``."""
    state = info.state
    if state is None or use is KeyUse.ANY:
        return
    if use is KeyUse.PENDING_DELETION_ONLY:
        if state != "PendingDeletion":
            raise KmsError.of(NOT_PENDING_DELETION, key_arn=info.arn)
        return
    if state == "PendingDeletion":
        raise KmsError.of(PENDING_DELETION, key_arn=info.arn)
    if use is KeyUse.NOT_PENDING_DELETION:
        return
    if state == "Enabled":
        return
    if state == "Disabled":
        raise KmsError.of(DISABLED, key_arn=info.arn)
    if state == "PendingImport":
        raise KmsError.of(PENDING_IMPORT, key_arn=info.arn)
    raise KmsError.of(KEY_STATE, key_arn=info.arn, state=state)


class KeyDirectory:
    """``describe(key)`` with a cache keyed by the identifier asked for (id, ARN or alias)."""

    def __init__(
        self,
        describe: Callable[[str], KeyInfo],
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, KeyInfo]] = {}

    def lookup(self, key: str) -> KeyInfo:
        now = self._clock()
        with self._lock:
            cached = self._entries.get(key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        info = self._describe(key)
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now, info)
        return info

    def invalidate(self) -> None:
        """Forget every state (after an operation that may have changed one)."""
        with self._lock:
            self._entries.clear()
