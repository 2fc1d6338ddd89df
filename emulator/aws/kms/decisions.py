"""What the KMS front decided, and why: a bounded, thread-safe record of its recent decisions.

The front records one :class:`Decision` per request it decides (allowed by a key policy
statement; denied by one, or because no statement's conditions held -- naming the
condition keys that did not match, such as ``kms:RecipientAttestation:PCR2`` --, or
because the attestation document was unusable). Reasons name statements, condition keys
and operators, never their values, key material or plaintext.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["DEFAULT_CAPACITY", "Decision", "DecisionLog"]

DEFAULT_CAPACITY = 200


@dataclass(frozen=True)
class Decision:
    """One decision of the front."""

    #: Unix time of the decision.
    at: float
    #: The KMS operation (``Decrypt``, ``GenerateDataKey``, ...).
    operation: str
    #: The key's ARN, when the request names a key.
    key_id: str | None
    #: The caller's principal ARN, when identified.
    principal: str | None
    allowed: bool
    reason: str


class DecisionLog:
    """The last ``capacity`` decisions, oldest dropped first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a decision log holds at least one decision")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._decisions: deque[Decision] = deque(maxlen=capacity)

    def record(self, decision: Decision) -> None:
        with self._lock:
            self._decisions.append(decision)

    def recent(self, limit: int = 50) -> list[Decision]:
        """Up to ``limit`` decisions, newest first."""
        if limit <= 0:
            return []
        with self._lock:
            newest_first = list(reversed(self._decisions))
        return newest_first[:limit]

    def __len__(self) -> int:
        with self._lock:
            return len(self._decisions)
