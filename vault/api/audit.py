"""Audit records: what the log of spec 1.5 holds, their outcome, and paging tokens.

One record per change or decrypt attempt, keyed by vault id and the microseconds since
the epoch (as a decimal string, 16 digits until the year 2286, so string order is time
order). Records carry field *names* only, never values. Additions that upstream readers
ignore: the outcome (``Success``, ``PartialSuccess`` or the error code of a failed
decrypt); the field names on ``CreateVault`` and on PATCH's ``UpdateVault`` too (which
fields were written); and an expiry when retention is configured (D14). The item layout
is the store's (:mod:`vault.api.store`).

A decrypt that reaches the parent is audited *before* the parent is asked (decision D16):
its record is written ``Pending`` with the caller's principal, the reason, the field and
expression names and the request id, and then completed with the outcome. When the API
cannot know what the enclave did (the request went out and no answer came back) the
outcome is ``Unknown`` and the error the API saw is kept beside it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from vault.api.models import AuditEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SORT_KEY_PATTERN = re.compile(r"^[0-9]{1,20}$")


class AuditEventType(enum.StrEnum):
    CREATE = "CreateVault"
    UPDATE = "UpdateVault"
    DELETE = "DeleteVault"
    #: ``DELETE ?forget=true``: the vault item, its encrypted private key included, is gone.
    FORGET = "ForgetVault"
    DECRYPT = "DecryptVault"
    #: ``POST /vaults/{id}/rotate``: every field re-sealed under a new key pair (names, no values).
    ROTATE = "RotateVault"
    #: ``POST /vaults/search``: who searched which field (never the value), in the log of
    #: the reserved id ``search`` (not a vault id, so no vault's log can hold it).
    SEARCH = "SearchVaults"


SUCCESS = "Success"
#: Written before the parent is asked; replaced by the outcome once it is known.
PENDING = "Pending"
#: The request went out and no answer came: the enclave may or may not have decrypted.
UNKNOWN = "Unknown"
#: A decrypt that answered, but with per-field or per-expression errors.
PARTIAL_SUCCESS = "PartialSuccess"
#: Upstream's reason on an UpdateVault record that removed fields.
REMOVE_FIELDS_REASON = "RemoveFields"


@dataclass(frozen=True)
class Caller:
    """Who asked, from API Gateway's request context (IAM authorization); ``None`` where it says nothing."""

    principal: str | None = None
    #: API Gateway's ``requestContext.requestId``, to find the request in its access logs.
    gateway_request_id: str | None = None


@dataclass(frozen=True)
class AuditRecord:
    """A record to write: what happened to which vault, when, to which fields, and how it ended."""

    event: AuditEventType
    vault_id: str
    at_micros: int
    fields: Sequence[str] = ()
    reason: str | None = None
    outcome: str = SUCCESS
    #: The caller's principal ARN (decrypts and forgets).
    principal: str | None = None
    #: Output names of the CEL expressions asked for (never the expressions' text).
    expressions: Sequence[str] = ()
    #: The id the API gave this decrypt; the enclave's authorization carries the same id.
    request_id: str | None = None
    gateway_request_id: str | None = None
    #: With outcome ``Unknown``: the error the API saw (``ParentTimeout``, ``EnclaveTimeout``, ...).
    error_code: str | None = None


def _timestamp(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditEntry:
    """A record as read back, written by this API or by upstream's (no outcome, any event name)."""

    event: str
    at_micros: int
    reason: str | None = None
    fields: Sequence[str] = ()
    outcome: str | None = None
    principal: str | None = None
    expressions: Sequence[str] = ()
    request_id: str | None = None
    error_code: str | None = None

    def to_event(self) -> AuditEvent:
        """The API view of the entry."""
        return AuditEvent(
            event=self.event,
            timestamp=_timestamp(self.at_micros),
            reason=self.reason,
            fields=list(self.fields),
            outcome=self.outcome,
            principal=self.principal,
            expressions=list(self.expressions),
            request_id=self.request_id,
            error_code=self.error_code,
        )


class InvalidTokenError(ValueError):
    """A ``next_token`` that this API did not issue."""


def encode_token(sort_key: str) -> str:
    # Only the sort key travels: the partition comes from the path, so a token can never
    # open another vault's log.
    return base64.urlsafe_b64encode(sort_key.encode("ascii")).decode("ascii").rstrip("=")


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        sort_key = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidTokenError("next_token is not a token of this API") from None
    if not _SORT_KEY_PATTERN.match(sort_key):
        raise InvalidTokenError("next_token is not a token of this API")
    return sort_key
