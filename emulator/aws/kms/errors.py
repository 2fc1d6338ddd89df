"""The KMS front's error answers, shaped as AWS KMS shapes them.

One table (:data:`ERROR_TYPES`) names every error type the front answers with, its HTTP
status and -- where the text is fixed or templated -- AWS's message text. Answers are
``{"__type": <type>, "message": <text>}`` in ``application/x-amz-json-1.1``, as KMS
writes them; botocore reads ``__type`` as ``Error.Code``.

Where the texts come from: AWS's key-state documentation (``<key ARN> is disabled.``,
``<key ARN> is pending deletion.``, ``<key ARN> is not pending deletion.``), the
access-denied text of IAM's evaluation (``User: <principal> is not authorized to perform:
<action> on resource: <key ARN> because no resource-based policy allows the <action>
action``; ``... with an explicit deny in a resource-based policy``), and the texts AWS
answers for unknown keys and for a ``KeyId`` that does not match the ciphertext, which
moto and LocalStack reproduce. ``InvalidCiphertextException`` carries an empty message on
AWS (and moto).

Known differences between the backends and AWS, where the front follows AWS:

- moto answers a ``Decrypt`` whose ``KeyId`` names another key than the ciphertext's
  with ``AccessDeniedException``; AWS (and LocalStack) with ``IncorrectKeyException``.
- moto ignores key states: it decrypts and encrypts with disabled keys and keys pending
  deletion. AWS answers ``DisabledException`` and ``KMSInvalidStateException``.
- moto's ``AccessDeniedException`` answers carry no message (its texts are dropped on the
  wire); AWS's name the principal, the action and the key, or, for a ciphertext whose key
  the caller cannot reach, say so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorType:
    """One KMS error type: its ``__type``, its HTTP status, and AWS's message template."""

    name: str
    status: int
    #: ``str.format`` template with named fields; ``None``: the message is free text.
    template: str | None = None


ACCESS_DENIED = ErrorType(
    "AccessDeniedException",
    400,
    "User: {principal} is not authorized to perform: {action} on resource: {resource} "
    "because no resource-based policy allows the {action} action",
)
ACCESS_DENIED_EXPLICITLY = ErrorType(
    "AccessDeniedException",
    400,
    "User: {principal} is not authorized to perform: {action} on resource: {resource} "
    "with an explicit deny in a resource-based policy",
)
#: A refusal that is not the key policy's verdict (an unusable attestation document, no
#: known key policy): free text that says why.
ACCESS_DENIED_OTHER = ErrorType("AccessDeniedException", 400)
DISABLED = ErrorType("DisabledException", 400, "{key_arn} is disabled.")
PENDING_DELETION = ErrorType("KMSInvalidStateException", 400, "{key_arn} is pending deletion.")
NOT_PENDING_DELETION = ErrorType("KMSInvalidStateException", 400, "{key_arn} is not pending deletion.")
PENDING_IMPORT = ErrorType("KMSInvalidStateException", 400, "{key_arn} is pending import.")
KEY_STATE = ErrorType(
    "KMSInvalidStateException", 400, "{key_arn} is {state}, which is not valid for this request."
)
INVALID_CIPHERTEXT = ErrorType("InvalidCiphertextException", 400, "")
#: A ciphertext whose key the caller cannot reach (none, another region or account).
CIPHERTEXT_KEY_UNKNOWN = ErrorType(
    "AccessDeniedException",
    400,
    "The ciphertext refers to a customer master key that does not exist, does not exist in this "
    "region, or you are not allowed to access.",
)
INCORRECT_KEY = ErrorType(
    "IncorrectKeyException",
    400,
    "The key ID in the request does not identify a CMK that can perform this operation.",
)
KEY_NOT_FOUND = ErrorType("NotFoundException", 400, "Key '{key_arn}' does not exist")
INVALID_KEY_ID = ErrorType("NotFoundException", 400, "Invalid keyId {key}")
ALIAS_NOT_FOUND = ErrorType("NotFoundException", 400, "Alias {alias_arn} is not found.")
VALIDATION = ErrorType("ValidationException", 400)
INVALID_KEY_USAGE = ErrorType("InvalidKeyUsageException", 400)
MISSING_PARAMETER = ErrorType(
    "ValidationException",
    400,
    "1 validation error detected: Value null at '{member}' failed to satisfy constraint: "
    "Member must not be null",
)
SERIALIZATION = ErrorType("SerializationException", 400)
UNSUPPORTED_OPERATION = ErrorType("UnsupportedOperationException", 400)
UNKNOWN_OPERATION = ErrorType("UnknownOperationException", 400, "")
MISSING_TOKEN = ErrorType("MissingAuthenticationTokenException", 400, "Missing Authentication Token")
UNRECOGNIZED_CLIENT = ErrorType(
    "UnrecognizedClientException", 400, "The security token included in the request is invalid."
)
INVALID_SIGNATURE = ErrorType("InvalidSignatureException", 400)
DRY_RUN = ErrorType(
    "DryRunOperationException", 412, "The request would have succeeded, but the DryRun option is set."
)
THROTTLING = ErrorType("ThrottlingException", 400, "Rate exceeded")
INTERNAL = ErrorType("KMSInternalException", 500)
SERVICE_UNAVAILABLE = ErrorType("ServiceUnavailableException", 503)

#: Every error type the front answers with, by constant name.
ERROR_TYPES: dict[str, ErrorType] = {
    name: value for name, value in globals().items() if isinstance(value, ErrorType) and name.isupper()
}


class KmsError(Exception):
    """An error answer in the KMS JSON protocol."""

    def __init__(self, error_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status

    @classmethod
    def of(
        cls, kind: ErrorType, message: str | None = None, *, status: int | None = None, **fields: str
    ) -> KmsError:
        """An error of ``kind``: its template filled with ``fields``, or ``message`` as given."""
        if message is None:
            if kind.template is None:
                raise ValueError(f"{kind.name} needs a message")
            message = kind.template.format(**fields)
        return cls(kind.name, message, kind.status if status is None else status)

    def body(self) -> bytes:
        return json.dumps({"__type": self.error_type, "message": self.message}).encode()


def access_denied(principal: str, action: str, resource: str, *, explicit: bool = False) -> KmsError:
    """AWS's refusal of ``action`` on ``resource`` by the key policy."""
    kind = ACCESS_DENIED_EXPLICITLY if explicit else ACCESS_DENIED
    return KmsError.of(kind, principal=principal, action=action, resource=resource)


def validation(message: str) -> KmsError:
    return KmsError.of(VALIDATION, message)


def missing(member: str) -> KmsError:
    """A required request member is absent (AWS names it in lower camel case)."""
    return KmsError.of(MISSING_PARAMETER, member=member[:1].lower() + member[1:])
