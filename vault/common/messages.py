"""Messages exchanged by API, parent and enclave (upstream spec 1.9, 4.3, 4.4).

The decrypt request travels API -> parent over HTTPS as :class:`DecryptRequest`, and
parent -> enclave over vsock wrapped with the instance credentials as
:class:`EnclaveRequest`. The enclave answers with :class:`EnclaveReply`.

JSON keys are those of the upstream vault so that either side can talk to the other.
``code`` on a reply is an addition (unknown keys are ignored by upstream readers): a
stable machine-readable reason for a global failure.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from vault.common.authorization import AuthorizationWire

MAX_ENCLAVE_FIELDS = 1000
MAX_EXPRESSION_LENGTH = 10 * 1024  # bytes, per expression


class EnclaveErrorCode(enum.StrEnum):
    """Stable codes for global (whole-request) enclave failures."""

    INVALID_REQUEST = "InvalidRequest"
    INVALID_SUITE = "InvalidSuite"
    INVALID_ENCODING = "InvalidEncoding"
    INVALID_CIPHERTEXT = "InvalidCiphertext"
    KEY_DECRYPT_FAILED = "KeyDecryptFailed"
    #: KMS (through the vsock-proxy) did not answer the enclave within its timeouts.
    KMS_TIMEOUT = "KmsTimeout"
    ATTESTATION_FAILED = "AttestationFailed"
    EXPRESSION_TOO_LONG = "ExpressionTooLong"
    #: No fresh authorization from the API covers exactly this request (decision D16);
    #: the message names the check that failed (see ``vault.common.authorization``).
    UNAUTHORIZED = "Unauthorized"
    BUSY = "EnclaveBusy"
    INTERNAL = "InternalError"


class Credential(BaseModel):
    """Instance-role credentials; never shown in a repr, str or log line."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore")

    access_key_id: SecretStr = Field(alias="AccessKeyId")
    secret_access_key: SecretStr = Field(alias="SecretAccessKey")
    token: SecretStr = Field(default=SecretStr(""), alias="Token")

    def __repr__(self) -> str:
        return "Credential(AccessKeyId=[REDACTED], SecretAccessKey=[REDACTED], Token=[REDACTED])"

    __str__ = __repr__

    def to_wire(self) -> dict[str, str]:
        return {
            "AccessKeyId": self.access_key_id.get_secret_value(),
            "SecretAccessKey": self.secret_access_key.get_secret_value(),
            "Token": self.token.get_secret_value(),
        }


class DecryptRequest(BaseModel):
    """What the API sends the parent and the parent forwards to the enclave (shape only).

    Tier-specific limits (parent spec 3.3, enclave spec 4.4) are checked by each tier.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    vault_id: str
    region: str
    fields: dict[str, str]
    suite_id: str
    encrypted_private_key: str
    expressions: dict[str, str] | None = None
    encoding: str | None = None
    #: The API's signed authorization of this request (decision D16); an addition
    #: upstream readers ignore.
    authorization: AuthorizationWire | None = None
    #: What the enclave does with the opened fields; absent: a decrypt (upstream's only
    #: operation). Others answer no plaintext (see ``vault.enclave.operations``).
    operation: str | None = None
    #: The operation's inputs; the authorization signs them exactly.
    parameters: dict[str, str] | None = None

    def __repr__(self) -> str:
        # Field values are ciphertexts, but they are still customer data: keep them out of reprs.
        return (
            f"DecryptRequest(vault_id={self.vault_id!r}, region={self.region!r}, "
            f"fields={sorted(self.fields)!r}, suite_id={self.suite_id!r}, "
            f"expressions={list(self.expressions or {})!r}, encoding={self.encoding!r}, "
            f"operation={self.operation!r}, authorized={self.authorization is not None})"
        )

    __str__ = __repr__

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EnclaveRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    credential: Credential
    request: DecryptRequest

    def to_wire(self) -> dict[str, Any]:
        return {"credential": self.credential.to_wire(), "request": self.request.to_wire()}


class EnclaveReply(BaseModel):
    """``fields`` is absent on a global failure; ``errors`` is always present."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    fields: dict[str, Any] | None = None
    errors: list[str] = Field(default_factory=list)
    code: EnclaveErrorCode | None = None

    def __repr__(self) -> str:
        # Field values are decrypted plaintext: a repr names the fields, never their values.
        names = None if self.fields is None else list(self.fields)
        return f"EnclaveReply(fields={names!r}, errors={self.errors!r}, code={self.code!r})"

    __str__ = __repr__

    @property
    def is_global_failure(self) -> bool:
        return self.fields is None

    @classmethod
    def failure(cls, code: EnclaveErrorCode, message: str) -> EnclaveReply:
        return cls(fields=None, errors=[message], code=code)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.fields is not None:
            out["fields"] = self.fields
        out["errors"] = list(self.errors)
        if self.code is not None:
            out["code"] = self.code.value
        return out


BUSY_MESSAGE = "enclave busy"


# -- batches -----------------------------------------------------------------------------
# Several vaults' decrypts in one exchange (API -> parent -> enclave). Every entry is a
# complete DecryptRequest with its own authorization; the enclave handles each as it
# would handle it alone, so a batch changes how requests travel, never what is checked.
# The single-request messages above are unchanged.

#: Most decrypt requests one batch carries (the API's, the parent's and the enclave's bound).
MAX_BATCH = 50


class BatchDecryptRequest(BaseModel):
    """What the API sends the parent's ``POST /decrypt/batch``: ``{"requests": [...]}``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    requests: list[DecryptRequest] = Field(min_length=1, max_length=MAX_BATCH)

    def __repr__(self) -> str:
        return f"BatchDecryptRequest(vaults={[request.vault_id for request in self.requests]!r})"

    __str__ = __repr__

    def to_wire(self) -> dict[str, Any]:
        return {"requests": [request.to_wire() for request in self.requests]}


class EnclaveBatchRequest(BaseModel):
    """A batch as the parent frames it for the enclave: one credential, the requests in order.

    On the wire ``{"batch": [...], "credential": {...}}``; the ``batch`` key is what tells
    the enclave's server that the frame is a batch (a single request never has one).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    credential: Credential
    batch: list[DecryptRequest] = Field(min_length=1, max_length=MAX_BATCH)

    def __repr__(self) -> str:
        return f"EnclaveBatchRequest(vaults={[request.vault_id for request in self.batch]!r})"

    __str__ = __repr__

    def to_wire(self) -> dict[str, Any]:
        return {
            BATCH_KEY: [request.to_wire() for request in self.batch],
            "credential": self.credential.to_wire(),
        }


#: The key that marks a frame (and the parent's body) as a batch.
BATCH_KEY = "batch"


class EnclaveBatchReply(BaseModel):
    """One :class:`EnclaveReply` per request of the batch, in request order."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    replies: list[EnclaveReply] = Field(max_length=MAX_BATCH)

    def __repr__(self) -> str:
        return f"EnclaveBatchReply(replies={self.replies!r})"

    __str__ = __repr__

    def to_wire(self) -> dict[str, Any]:
        return {"replies": [reply.to_wire() for reply in self.replies]}
