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

from vault.common.rotation import ROTATE_OPERATION

# The contract lives in .base so that operation modules need not import this registry.
from vault.enclave.operations.base import FieldOperation, OpenedFields, OperationRefused
from vault.enclave.operations.index import IndexOperation
from vault.enclave.operations.rotate import RotateOperation

__all__ = ["OPERATIONS", "FieldOperation", "OpenedFields", "OperationRefused"]


#: Operation name (the request's ``operation``) -> its implementation.
OPERATIONS: Mapping[str, FieldOperation] = {
    "index": IndexOperation(),
    ROTATE_OPERATION: RotateOperation(),
}
