"""What the enclave may do with a vault's opened fields besides revealing them.

A request with ``operation`` set goes through the same steps as a decrypt: the
authorization (which signs the operation and its parameters), the KMS call under the
key's encryption context, the opening of every field. Then, instead of returning
plaintext, the handler gives the opened fields to the operation, whose answer carries
no plaintext (fields re-sealed to another key, keyed digests). Each operation is one
module here and one entry in :data:`OPERATIONS`.
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


#: Operation name (the request's ``operation``) -> its implementation.
OPERATIONS: Mapping[str, FieldOperation] = {}
