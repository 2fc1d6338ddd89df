"""The contract between the request handler and an operation (re-exported by the package).

Kept apart from the registry so that operation modules can import it without importing
the registry that imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from vault.common.hpke import Recipient
from vault.common.messages import DecryptRequest, EnclaveReply


class OperationRefused(Exception):
    """A request the operation cannot take; ``str()`` names the problem, never a value."""


@dataclass(frozen=True)
class OpenedFields:
    """A request's fields after opening: plaintext by name (``None`` where opening failed)."""

    request: DecryptRequest
    values: Mapping[str, str | None]
    #: Per-field errors of the opening, in the decrypt's wording.
    errors: tuple[str, ...]
    #: The key that opened them (for operations that derive from it); freed with the request.
    recipient: Recipient
    #: The private key as KMS released it (PKCS#8 DER), for derivations.
    private_key: bytes


class FieldOperation(Protocol):
    def check(self, request: DecryptRequest) -> None:
        """Refuse (:class:`OperationRefused`) before any KMS call what this operation cannot do."""
        ...

    def finish(self, opened: OpenedFields) -> EnclaveReply:
        """The reply: never a plaintext value."""
        ...
