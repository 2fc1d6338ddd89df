"""Audit records: the LOG items of spec 1.5, their outcome, retention and paging tokens.

One item per change or decrypt attempt, ``pk = LOG##<vault id>``, ``sk`` = microseconds
since the epoch as a decimal string (16 digits until the year 2286, so string order is
time order). Items carry field *names* only, never values. Additions that upstream
readers ignore: ``_o``, the outcome (``Success``, ``PartialSuccess`` or the error code of
a failed decrypt); ``_f`` on ``CreateVault`` and on PATCH's ``UpdateVault`` too (which
fields were written); and ``expire_at`` when retention is configured (D14).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.api.models import AuditEvent
from vault.infra.table import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, log_partition

SECONDS_PER_DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SORT_KEY_PATTERN = re.compile(r"^[0-9]{1,20}$")


class AuditEventType(enum.StrEnum):
    CREATE = "CreateVault"
    UPDATE = "UpdateVault"
    DELETE = "DeleteVault"
    DECRYPT = "DecryptVault"


SUCCESS = "Success"
#: A decrypt that answered, but with per-field or per-expression errors.
PARTIAL_SUCCESS = "PartialSuccess"
#: Upstream's reason on an UpdateVault record that removed fields.
REMOVE_FIELDS_REASON = "RemoveFields"


@dataclass(frozen=True)
class AuditRecord:
    event: AuditEventType
    vault_id: str
    at_micros: int
    fields: Sequence[str] = ()
    reason: str | None = None
    outcome: str = SUCCESS

    def to_item(self, retention_days: int | None) -> dict[str, Any]:
        item: dict[str, Any] = {
            PARTITION_KEY: {"S": log_partition(self.vault_id)},
            SORT_KEY: {"S": str(self.at_micros)},
            "_e": {"S": self.event.value},
            "_id": {"S": self.vault_id},
            "_ct": {"N": str(self.at_micros)},
            "_o": {"S": self.outcome},
        }
        if self.reason is not None:
            item["_r"] = {"S": self.reason}
        if self.fields:
            item["_f"] = {"L": [{"S": name} for name in self.fields]}
        if retention_days is not None:
            item[TTL_ATTRIBUTE] = {"N": str(self.at_micros // 1_000_000 + retention_days * SECONDS_PER_DAY)}
        return item


def _timestamp(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_from_item(item: dict[str, Any]) -> AuditEvent:
    """The API view of a LOG item, written by this API or by upstream's."""
    micros = int(item.get("_ct", {}).get("N") or item[SORT_KEY]["S"])
    return AuditEvent(
        event=item.get("_e", {}).get("S", ""),
        timestamp=_timestamp(micros),
        reason=item.get("_r", {}).get("S"),
        fields=[entry["S"] for entry in item.get("_f", {}).get("L", []) if "S" in entry],
        outcome=item.get("_o", {}).get("S"),
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
