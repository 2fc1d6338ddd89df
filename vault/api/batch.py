"""The bookkeeping of a batch decrypt: one entry per vault, from request to result.

:meth:`VaultService.decrypt_batch <vault.api.service.VaultService.decrypt_batch>` does
the I/O (one read of every vault, one audit transaction, one parent call, one completing
transaction); this module holds what is decided per vault without I/O: where an entry
stands, the audit outcome it ends with, and how it reads in the answer. An entry ends
in one of two ways, as the single decrypt would have ended for that vault alone: data
and per-field errors, or the error (status, stable code, message) the single decrypt
would have answered. A failure of the whole exchange is not an entry's: it fails the
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vault.api.audit import PARTIAL_SUCCESS, SUCCESS, AuditRecord
from vault.api.errors import ApiError
from vault.api.models import (
    BatchDecrypted,
    BatchEntryError,
    BatchFailed,
    DecryptBatchResult,
    DecryptBody,
)
from vault.api.reveal_policy import RevealPlan, RevealRefused
from vault.common.messages import DecryptRequest, EnclaveReply


def entry_error(exc: ApiError) -> BatchEntryError:
    """``exc`` as one vault's error: the single decrypt's status, code, message and details."""
    details = exc.details

    def strings(key: str) -> list[str] | None:
        value = details.get(key)
        return [str(item) for item in value] if isinstance(value, list) else None

    enclave_code = details.get("enclaveCode")
    return BatchEntryError(
        status=exc.status,
        code=exc.code.value,
        message=exc.message,
        enclaveCode=enclave_code if isinstance(enclave_code, str) else None,
        errors=strings("errors"),
        fields=strings("fields"),
        expressions=strings("expressions"),
    )


@dataclass
class BatchEntry:
    """One vault of a batch and where its decrypt stands."""

    vault_id: str
    body: DecryptBody
    plan: RevealPlan
    refused: RevealRefused | None
    #: The ``Pending`` record of an entry that waits for the parent.
    audit: AuditRecord | None = None
    #: What the parent is asked for this vault (unsigned), once the entry waits for it.
    request: DecryptRequest | None = None
    #: What is known without the enclave: ``None`` per asked field, errors of absent fields.
    data: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    error: ApiError | None = None
    done: bool = False

    @property
    def waiting(self) -> bool:
        """Audited ``Pending`` and to be sent to the parent."""
        return self.request is not None and not self.done

    def pending(self) -> AuditRecord:
        """The pending record of an entry that went to the parent."""
        if self.audit is None:
            raise ValueError(f"batch entry {self.vault_id} has no audit record")
        return self.audit

    def sent(self) -> DecryptRequest:
        """The request of an entry that goes to the parent."""
        if self.request is None:
            raise ValueError(f"batch entry {self.vault_id} has nothing to send")
        return self.request

    def fail(self, exc: ApiError) -> None:
        self.error = exc
        self.done = True

    def answer(self, reply: EnclaveReply) -> None:
        """Take the enclave's (successful) reply for this vault."""
        self.data = {**self.data, **(reply.fields or {})}
        self.errors = [*self.errors, *reply.errors]
        self.done = True

    def finish_locally(self) -> None:
        """Nothing to ask the parent: every asked field is absent and there are no expressions."""
        self.done = True

    @property
    def outcome(self) -> str:
        """The audit outcome of a finished entry."""
        if self.error is not None:
            return self.error.code.value
        return PARTIAL_SUCCESS if self.errors else SUCCESS

    def completed(self) -> AuditRecord:
        """The entry's pending record with its outcome."""
        return replace(self.pending(), outcome=self.outcome)

    def result(self) -> BatchDecrypted | BatchFailed:
        if self.error is not None:
            return BatchFailed(id=self.vault_id, error=entry_error(self.error))
        # Opened for the expressions only: their plaintext never leaves the API.
        hidden = frozenset(self.plan.inputs_only)
        data = {key: value for key, value in self.data.items() if key not in hidden}
        return BatchDecrypted(id=self.vault_id, data=data, errors=list(self.errors))


def batch_result(entries: Sequence[BatchEntry]) -> DecryptBatchResult:
    """Every entry's result, in request order."""
    return DecryptBatchResult(results=[entry.result() for entry in entries])
