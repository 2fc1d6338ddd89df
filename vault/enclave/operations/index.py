"""Operation ``index``: blind-index tokens of values sealed to the deployment's index key.

The request names the reserved index key (:data:`~vault.common.blind_index.INDEX_KEY_ID`)
as its vault, carries the values to index as fields (sealed by the API to the index
public key, so the parent never sees them), and signs three parameters: the deployment
id, the target (the vault being written, or ``search``) and the SHA-256 of the sealed
inputs. The handler checks the authorization and asks KMS for the index private key
exactly as for a vault key; this operation then answers, per field::

    K_f     = HKDF-SHA256(ikm = index private key (PKCS#8 DER), salt = none,
                          info = "nitro-vault blind-index v1" 0x00 deployment 0x00 field)
    token_f = base64url(HMAC-SHA256(K_f, normalize(field, value)))

(:mod:`vault.enclave.blind_index`) and never a value. A field that does not open fails
the whole request: a write must not store a vault without its token.
"""

from __future__ import annotations

import hmac
import re

from vault.common.blind_index import (
    DEPLOYMENT_ID_PATTERN,
    INDEX_KEY_ID,
    INDEX_PARAMETERS,
    PARAM_DEPLOYMENT,
    PARAM_SEALED,
    PARAM_TARGET,
    SEARCH_TARGET,
    SEARCHABLE_FIELDS,
    sealed_digest,
)
from vault.common.messages import DecryptRequest, EnclaveErrorCode, EnclaveReply
from vault.enclave.blind_index import IndexKey
from vault.enclave.operations.base import OpenedFields, OperationRefused

#: A vault id as the API makes them (``v_`` + base62), or the search target.
_TARGET = re.compile(r"v_[0-9A-Za-z]{1,27}")


class IndexOperation:
    """:class:`~vault.enclave.operations.FieldOperation` ``index``."""

    def check(self, request: DecryptRequest) -> None:
        if request.vault_id != INDEX_KEY_ID:
            raise OperationRefused("index requests are for the index key only")
        if request.authorization is None:
            # Without a signed request the enclave would be an HMAC oracle for anyone
            # who reaches it; refused even by a handler that checks no authorizations.
            raise OperationRefused("index requests must be authorized")
        parameters = request.parameters or {}
        if set(parameters) != INDEX_PARAMETERS:
            raise OperationRefused("index parameters must be deployment, target and sealed_sha256")
        if not DEPLOYMENT_ID_PATTERN.fullmatch(parameters[PARAM_DEPLOYMENT]):
            raise OperationRefused("index parameter deployment is malformed")
        target = parameters[PARAM_TARGET]
        if target != SEARCH_TARGET and not _TARGET.fullmatch(target):
            raise OperationRefused("index parameter target is malformed")
        if not request.fields:
            raise OperationRefused("index requests need at least one field")
        unknown = sorted(name for name in request.fields if name not in SEARCHABLE_FIELDS)
        if unknown:
            raise OperationRefused("index requests name searchable fields only")
        if not hmac.compare_digest(parameters[PARAM_SEALED], sealed_digest(request.fields)):
            raise OperationRefused("index inputs are not the ones authorized")

    def finish(self, opened: OpenedFields) -> EnclaveReply:
        key = IndexKey(opened.private_key, (opened.request.parameters or {})[PARAM_DEPLOYMENT])
        tokens: dict[str, str] = {}
        for name, value in opened.values.items():
            if value is None:
                return EnclaveReply.failure(
                    EnclaveErrorCode.INVALID_CIPHERTEXT, f"[{name}] index input does not open"
                )
            tokens[name] = key.token(name, value)
        return EnclaveReply(fields=tokens, errors=[])
