"""The vault table: reads, and the one ``TransactWriteItems`` call each request makes (spec 1.5, 1.6).

All writes of a request are collected in a :class:`WriteTransaction` and committed
together, so a vault and its audit record change together or not at all. Conditions
make concurrent requests safe: a vault is created only where none exists, changed or
deleted only where one exists (decision D6: no stub items), and an audit record never
overwrites another. A failed condition on the vault item means the vault is gone (404);
any other cancellation is upstream's 409 ``Transaction Cancelled``.

The rest of the API sees typed records (:class:`VaultRecord`, :class:`~vault.api.audit.AuditRecord`,
:class:`~vault.api.audit.AuditEntry`); this module alone knows the item layout of spec 1.5
(attribute names such as ``_hs`` and DynamoDB's low-level JSON shapes ``{"B": ...}``), with
the key schema from :mod:`vault.infra.table`. Log lines name operations, attribute names and
error codes, never values.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from vault.api.audit import AuditEntry, AuditRecord
from vault.api.clients import aws_error_code
from vault.api.errors import ApiError, ErrorCode, transaction_cancelled, vault_changed, vault_not_found
from vault.api.observability import logger
from vault.infra.table import (
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
    index_attribute,
    log_partition,
    vault_key,
)

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]
#: DynamoDB's limit on actions in one TransactWriteItems call.
MAX_TRANSACTION_ACTIONS = 100
#: DynamoDB's limit on keys in one BatchGetItem call.
MAX_BATCH_GET_KEYS = 100
#: Calls a batch read makes for keys DynamoDB left unprocessed, the first included.
_BATCH_GET_ATTEMPTS = 4
_BATCH_GET_BACKOFF_SECONDS = 0.02
SECONDS_PER_DAY = 86_400

#: A stored field value: ``bytes`` for the binary encoding (``enc || ct``, a DynamoDB
#: Binary), ``str`` for a legacy hex value (a String), decided per field (decision D5).
StoredValue = bytes | str

# The vault item's own attributes (spec 1.5); vault field names never start with "_".
_VAULT_ID = "_id"
_ENCODING = "_v"
_SUITE = "_hs"
_PRIVATE_KEY = "_sk"
_PUBLIC_KEY = "_pk"
_CREATED = "_ct"
_MODIFIED = "_mt"
# The audit item's attributes.
_EVENT = "_e"
_REASON = "_r"
_FIELDS = "_f"
_OUTCOME = "_o"
_PRINCIPAL = "_p"
_EXPRESSIONS = "_x"
_REQUEST_ID = "_q"
_GATEWAY_REQUEST_ID = "_g"
_ERROR_CODE = "_c"


class VaultPart(enum.Enum):
    """What a read fetches besides field values (each read projects only what it uses)."""

    SUITE = _SUITE
    PRIVATE_KEY = _PRIVATE_KEY
    PUBLIC_KEY = _PUBLIC_KEY
    ENCODING = _ENCODING
    TIMES = _CREATED


@dataclass(frozen=True)
class VaultRecord:
    """A vault as stored; a read leaves ``None`` (or no field) for what it did not fetch or find."""

    vault_id: str
    suite_id: bytes | None = None
    public_key: bytes | None = None
    encrypted_private_key: bytes | None = None
    #: 1 (legacy hex) or 2 (binary): what the vault was written with; reads decide per field (D5).
    encoding_version: int | None = None
    created_micros: int | None = None
    modified_micros: int | None = None
    fields: Mapping[str, StoredValue] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Field values are ciphertext; names are enough to debug.
        return f"VaultRecord(vault_id={self.vault_id!r}, fields={sorted(self.fields)!r})"


@dataclass(frozen=True)
class NewVault:
    """A vault to create: its suite, key pair, the encoding it writes and its first (sealed) fields."""

    vault_id: str
    suite_id: bytes
    public_key: bytes = field(repr=False)
    encrypted_private_key: bytes = field(repr=False)
    encoding_version: int
    created_micros: int
    fields: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    #: Blind-index tokens by field name (stored as ``index_attribute(name)``).
    index_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RotatedVault:
    """A vault's new key pair and suite, and every field re-sealed, replacing what ``read`` held.

    ``read`` is the vault as the rotation read it (fields, key, suite, encoding, times);
    ``absent`` the field names it did not hold. The write happens only if all of that is
    still what the table holds.
    """

    read: VaultRecord
    absent: Sequence[str]
    suite_id: bytes
    public_key: bytes = field(repr=False)
    encrypted_private_key: bytes = field(repr=False)
    encoding_version: int
    modified_micros: int
    fields: Mapping[str, bytes] = field(default_factory=dict, repr=False)


def _stored(value: StoredValue) -> AttributeValue:
    return _binary(value) if isinstance(value, bytes) else _string(value)


def _binary(value: bytes) -> AttributeValue:
    return {"B": value}


def _number(value: int) -> AttributeValue:
    return {"N": str(value)}


def _string(value: str) -> AttributeValue:
    return {"S": value}


def _vault_item(vault: NewVault) -> Item:
    return {
        _VAULT_ID: _string(vault.vault_id),
        _ENCODING: _number(vault.encoding_version),
        _SUITE: _binary(vault.suite_id),
        _PRIVATE_KEY: _binary(vault.encrypted_private_key),
        _PUBLIC_KEY: _binary(vault.public_key),
        _CREATED: _number(vault.created_micros),
        _MODIFIED: _number(vault.created_micros),
        **{name: _binary(value) for name, value in vault.fields.items()},
        **{index_attribute(name): _string(token) for name, token in vault.index_tokens.items()},
    }


def _bytes_of(item: Item, name: str) -> bytes | None:
    value = item.get(name, {}).get("B")
    return None if value is None else bytes(value)


def _int_of(item: Item, name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return None if value is None else int(value)


def _field_value(value: AttributeValue) -> StoredValue:
    if "B" in value:
        return bytes(value["B"])
    # A String is a legacy hex value. Any other shape was never written by either API; it
    # reaches the enclave as an empty legacy value, which it refuses for that field alone.
    return str(value.get("S", ""))


def _vault_record(vault_id: str, item: Item, fields: Sequence[str]) -> VaultRecord:
    return VaultRecord(
        vault_id=vault_id,
        suite_id=_bytes_of(item, _SUITE),
        public_key=_bytes_of(item, _PUBLIC_KEY),
        encrypted_private_key=_bytes_of(item, _PRIVATE_KEY),
        encoding_version=_int_of(item, _ENCODING),
        created_micros=_int_of(item, _CREATED),
        modified_micros=_int_of(item, _MODIFIED),
        fields={name: _field_value(item[name]) for name in fields if name in item},
    )


def _audit_item(record: AuditRecord, retention_days: int | None) -> Item:
    item: Item = {
        PARTITION_KEY: _string(log_partition(record.vault_id)),
        SORT_KEY: _string(str(record.at_micros)),
        _EVENT: _string(record.event.value),
        _VAULT_ID: _string(record.vault_id),
        _CREATED: _number(record.at_micros),
        _OUTCOME: _string(record.outcome),
    }
    if record.reason is not None:
        item[_REASON] = _string(record.reason)
    if record.fields:
        item[_FIELDS] = {"L": [_string(name) for name in record.fields]}
    if record.expressions:
        item[_EXPRESSIONS] = _string_list(record.expressions)
    for name, value in (
        (_PRINCIPAL, record.principal),
        (_REQUEST_ID, record.request_id),
        (_GATEWAY_REQUEST_ID, record.gateway_request_id),
        (_ERROR_CODE, record.error_code),
    ):
        if value is not None:
            item[name] = _string(value)
    if retention_days is not None:
        item[TTL_ATTRIBUTE] = _number(record.at_micros // 1_000_000 + retention_days * SECONDS_PER_DAY)
    return item


def _string_list(values: Sequence[str]) -> AttributeValue:
    return {"L": [_string(value) for value in values]}


def _strings_of(item: Item, name: str) -> tuple[str, ...]:
    return tuple(entry["S"] for entry in item.get(name, {}).get("L", []) if "S" in entry)


def _audit_entry(item: Item) -> AuditEntry:
    """A LOG item, written by this API or by upstream's (which has no ``_o`` and may lack ``_ct``)."""
    return AuditEntry(
        event=item.get(_EVENT, {}).get("S", ""),
        at_micros=int(item.get(_CREATED, {}).get("N") or item[SORT_KEY]["S"]),
        reason=item.get(_REASON, {}).get("S"),
        fields=_strings_of(item, _FIELDS),
        outcome=item.get(_OUTCOME, {}).get("S"),
        principal=item.get(_PRINCIPAL, {}).get("S"),
        expressions=_strings_of(item, _EXPRESSIONS),
        request_id=item.get(_REQUEST_ID, {}).get("S"),
        error_code=item.get(_ERROR_CODE, {}).get("S"),
    )


def storage_error() -> ApiError:
    return ApiError(500, ErrorCode.STORAGE_ERROR, "Unable to reach the vault store")


def _names(prefix: str, attributes: Sequence[str]) -> dict[str, str]:
    # Placeholders for every attribute name: field names may be DynamoDB reserved words.
    return {f"#{prefix}{index}": name for index, name in enumerate(attributes)}


@dataclass
class _Action:
    request: dict[str, Any]
    #: What a failed condition on this action means for the client.
    on_condition_failure: ApiError | None
    #: For a condition that also requires the vault unchanged: its id. After a failure the
    #: vault is looked up: still there means it changed (409), gone means ``on_condition_failure``.
    changed_vault: str | None = None


@dataclass
class WriteTransaction:
    table_name: str
    actions: list[_Action] = field(default_factory=list)

    def put_vault(self, vault: NewVault) -> None:
        """Create ``vault``, where no vault of that id exists."""
        self.actions.append(
            _Action(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": {**vault_key(vault.vault_id), **_vault_item(vault)},
                        "ConditionExpression": "attribute_not_exists(#pk) and attribute_not_exists(#sk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
                    }
                },
                # Two creates drawing the same 16 random bytes in the same second.
                on_condition_failure=None,
            )
        )

    def update_vault(
        self,
        vault_id: str,
        *,
        modified_micros: int,
        fields: Mapping[str, bytes] | None = None,
        remove: Sequence[str] = (),
        index_tokens: Mapping[str, str] | None = None,
        sealed_for: bytes | None = None,
    ) -> None:
        """Write ``fields`` (binary values), remove ``remove`` and stamp the change on an existing vault.

        One ``SET #a0 = :a0, ... REMOVE #r0, ...`` (spec 1.6 format). ``sealed_for``: the
        public key ``fields`` were sealed to; the write is refused (409) if the vault's key
        changed since (a rotation in between would leave fields only the old key opens).
        """
        set_attributes = {
            **{name: _binary(value) for name, value in (fields or {}).items()},
            **{index_attribute(name): _string(token) for name, token in (index_tokens or {}).items()},
            _MODIFIED: _number(modified_micros),
        }
        set_names = _names("a", list(set_attributes))
        remove_names = _names("r", remove)
        clauses = []
        if set_names:
            clauses.append("SET " + ", ".join(f"{name} = :{name[1:]}" for name in set_names))
        if remove_names:
            clauses.append("REMOVE " + ", ".join(remove_names))
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": vault_key(vault_id),
            "UpdateExpression": " ".join(clauses),
            "ConditionExpression": "attribute_exists(#pk)",
            "ExpressionAttributeNames": {**set_names, **remove_names, "#pk": PARTITION_KEY},
        }
        if set_names:
            update["ExpressionAttributeValues"] = {
                f":{name[1:]}": set_attributes[attribute] for name, attribute in set_names.items()
            }
        if sealed_for is not None:
            update["ConditionExpression"] = "attribute_exists(#pk) and #sealed_for = :sealed_for"
            update["ExpressionAttributeNames"]["#sealed_for"] = _PUBLIC_KEY
            update.setdefault("ExpressionAttributeValues", {})[":sealed_for"] = _binary(sealed_for)
        self.actions.append(
            _Action(
                {"Update": update},
                on_condition_failure=vault_not_found(),
                changed_vault=vault_id if sealed_for is not None else None,
            )
        )

    def rotate_vault(self, rotated: RotatedVault) -> None:
        """Replace every field, the key pair, the suite and the encoding of an unchanged vault.

        The condition compares each attribute the rotation read (every field value, the
        public and encrypted private key, the suite, the encoding, the modified time) and
        requires the absent fields to be still absent: a write in between, even one in the
        same microsecond, fails it, and the rotation is refused (409) with nothing written.
        """
        read = rotated.read
        new_values: dict[str, AttributeValue] = {
            **{name: _binary(value) for name, value in rotated.fields.items()},
            _PUBLIC_KEY: _binary(rotated.public_key),
            _PRIVATE_KEY: _binary(rotated.encrypted_private_key),
            _SUITE: _binary(rotated.suite_id),
            _ENCODING: _number(rotated.encoding_version),
            _MODIFIED: _number(rotated.modified_micros),
        }
        old_values: dict[str, AttributeValue | None] = {
            **{name: _stored(value) for name, value in read.fields.items()},
            **dict.fromkeys(rotated.absent),
            _PUBLIC_KEY: None if read.public_key is None else _binary(read.public_key),
            _PRIVATE_KEY: None if read.encrypted_private_key is None else _binary(read.encrypted_private_key),
            _SUITE: None if read.suite_id is None else _binary(read.suite_id),
            _ENCODING: None if read.encoding_version is None else _number(read.encoding_version),
            _MODIFIED: None if read.modified_micros is None else _number(read.modified_micros),
        }
        names = _names("a", list(dict.fromkeys([*new_values, *old_values])))
        placeholder = {attribute: name for name, attribute in names.items()}
        values = {f":n{placeholder[attribute][2:]}": value for attribute, value in new_values.items()}
        conditions = ["attribute_exists(#pk)"]
        for attribute, old in old_values.items():
            name = placeholder[attribute]
            if old is None:
                conditions.append(f"attribute_not_exists({name})")
            else:
                conditions.append(f"{name} = :o{name[2:]}")
                values[f":o{name[2:]}"] = old
        assignments = [
            f"{placeholder[attribute]} = :n{placeholder[attribute][2:]}" for attribute in new_values
        ]
        update = {
            "TableName": self.table_name,
            "Key": vault_key(read.vault_id),
            "UpdateExpression": "SET " + ", ".join(assignments),
            "ConditionExpression": " and ".join(conditions),
            "ExpressionAttributeNames": {**names, "#pk": PARTITION_KEY},
            "ExpressionAttributeValues": values,
        }
        self.actions.append(_Action({"Update": update}, on_condition_failure=vault_changed()))

    def delete_vault(self, vault_id: str) -> None:
        self.actions.append(
            _Action(
                {
                    "Delete": {
                        "TableName": self.table_name,
                        "Key": vault_key(vault_id),
                        "ConditionExpression": "attribute_exists(#pk)",
                        "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
                    }
                },
                on_condition_failure=vault_not_found(),
            )
        )

    def put_audit(self, record: AuditRecord, retention_days: int | None = None) -> None:
        """Add ``record`` to its vault's log; with ``retention_days`` it expires that long after (D14)."""
        self.actions.append(
            _Action(
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": _audit_item(record, retention_days),
                        # Two records of one vault in the same microsecond: refuse the
                        # second (409) rather than lose the first.
                        "ConditionExpression": "attribute_not_exists(#sk)",
                        "ExpressionAttributeNames": {"#sk": SORT_KEY},
                    }
                },
                on_condition_failure=None,
            )
        )

    def complete_audit(self, record: AuditRecord, *, pending: str) -> None:
        """Set the outcome (and error code) of ``record``, written earlier with outcome ``pending``.

        The condition makes an outcome final: a record is completed once, and only one
        that was written (a lost first write can never be "completed" into existence).
        """
        values: dict[str, AttributeValue] = {":o": _string(record.outcome), ":pending": _string(pending)}
        clauses = ["#o = :o"]
        if record.error_code is not None:
            clauses.append("#c = :c")
            values[":c"] = _string(record.error_code)
        self.actions.append(
            _Action(
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {
                            PARTITION_KEY: _string(log_partition(record.vault_id)),
                            SORT_KEY: _string(str(record.at_micros)),
                        },
                        "UpdateExpression": "SET " + ", ".join(clauses),
                        "ConditionExpression": "attribute_exists(#sk) and #o = :pending",
                        "ExpressionAttributeNames": {
                            "#sk": SORT_KEY,
                            "#o": _OUTCOME,
                            **({"#c": _ERROR_CODE} if record.error_code is not None else {}),
                        },
                        "ExpressionAttributeValues": values,
                    }
                },
                on_condition_failure=None,
            )
        )


class VaultStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self.table_name = table_name

    def transaction(self) -> WriteTransaction:
        return WriteTransaction(self.table_name)

    def get_vault(
        self, vault_id: str, fields: Sequence[str] = (), parts: Collection[VaultPart] = ()
    ) -> VaultRecord | None:
        """The vault with those of ``fields`` it holds and the ``parts`` asked for, or ``None``."""
        wanted = [part.value for part in VaultPart if part in parts]
        if VaultPart.TIMES in parts:
            wanted.append(_MODIFIED)
        projection = list(dict.fromkeys([PARTITION_KEY, *wanted, *fields]))
        names = _names("a", projection)
        try:
            reply = self._client.get_item(
                TableName=self.table_name,
                Key=vault_key(vault_id),
                ProjectionExpression=", ".join(names),
                ExpressionAttributeNames=names,
                # A client that just wrote must read what it wrote.
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError) as exc:
            logger.error("GetItem failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        item: Item | None = reply.get("Item")
        return None if item is None else _vault_record(vault_id, item, fields)

    def get_vaults(
        self, wanted: Sequence[tuple[str, Sequence[str]]], parts: Collection[VaultPart] = ()
    ) -> dict[str, VaultRecord]:
        """Several vaults in one ``BatchGetItem``: ``(vault id, fields)`` each; missing ids are absent.

        The projection is the union of every vault's fields; each record holds only the
        fields asked for that vault. Keys DynamoDB leaves unprocessed (throttling) are asked
        again, a bounded number of times, then the read fails as a whole.
        """
        if len(wanted) > MAX_BATCH_GET_KEYS:
            raise ValueError(f"a batch read holds at most {MAX_BATCH_GET_KEYS} vaults")
        columns = [part.value for part in VaultPart if part in parts]
        if VaultPart.TIMES in parts:
            columns.append(_MODIFIED)
        union = [name for _, fields in wanted for name in fields]
        projection = list(dict.fromkeys([PARTITION_KEY, *columns, *union]))
        names = _names("a", projection)
        vault_ids = list(dict.fromkeys(vault_id for vault_id, _ in wanted))
        keys = [vault_key(vault_id) for vault_id in vault_ids]
        # Items come back in no particular order: matched to their vault by partition key.
        by_partition = {
            key[PARTITION_KEY]["S"]: vault_id for vault_id, key in zip(vault_ids, keys, strict=True)
        }
        items: dict[str, Item] = {}
        for attempt in range(_BATCH_GET_ATTEMPTS):
            if not keys:
                break
            if attempt:
                time.sleep(_BATCH_GET_BACKOFF_SECONDS * 2 ** (attempt - 1))
            request = {
                self.table_name: {
                    "Keys": keys,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                    # A client that just wrote must read what it wrote.
                    "ConsistentRead": True,
                }
            }
            try:
                reply = self._client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as exc:
                logger.error("BatchGetItem failed", extra={"error_code": aws_error_code(exc)})
                raise storage_error() from exc
            for item in reply.get("Responses", {}).get(self.table_name, []):
                vault_id = by_partition.get(item.get(PARTITION_KEY, {}).get("S", ""))
                if vault_id is not None:
                    items[vault_id] = item
            keys = reply.get("UnprocessedKeys", {}).get(self.table_name, {}).get("Keys", [])
        if keys:
            logger.error("BatchGetItem left keys unprocessed", extra={"unprocessed": len(keys)})
            raise storage_error()
        return {
            vault_id: _vault_record(vault_id, items[vault_id], fields)
            for vault_id, fields in wanted
            if vault_id in items
        }

    def query_audit(
        self, vault_id: str, limit: int, after_sort_key: str | None
    ) -> tuple[list[AuditEntry], str | None]:
        """Up to ``limit`` log entries, newest first, and the sort key to continue after (if any)."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#pk = :pk",
            "ExpressionAttributeNames": {"#pk": PARTITION_KEY},
            "ExpressionAttributeValues": {":pk": {"S": log_partition(vault_id)}},
            "ScanIndexForward": False,
            "Limit": limit,
            "ConsistentRead": True,
        }
        if after_sort_key is not None:
            request["ExclusiveStartKey"] = {
                PARTITION_KEY: {"S": log_partition(vault_id)},
                SORT_KEY: {"S": after_sort_key},
            }
        try:
            reply = self._client.query(**request)
        except (ClientError, BotoCoreError) as exc:
            logger.error("Query failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
        items: list[Item] = reply.get("Items", [])
        last = reply.get("LastEvaluatedKey")
        return [_audit_entry(item) for item in items], (last[SORT_KEY]["S"] if last else None)

    def commit(self, transaction: WriteTransaction) -> None:
        """Send every action in one ``TransactWriteItems`` call."""
        actions = transaction.actions
        if not actions:
            return
        if len(actions) > MAX_TRANSACTION_ACTIONS:
            raise ValueError(f"a transaction holds at most {MAX_TRANSACTION_ACTIONS} actions")
        try:
            self._client.transact_write_items(TransactItems=[action.request for action in actions])
        except ClientError as exc:
            if aws_error_code(exc) != "TransactionCanceledException":
                logger.error("TransactWriteItems failed", extra={"error_code": aws_error_code(exc)})
                raise storage_error() from exc
            reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
            logger.warning("Transaction cancelled", extra={"cancellation_reasons": reasons})
            for action, reason in zip(actions, reasons, strict=False):
                if reason == "ConditionalCheckFailed" and action.on_condition_failure is not None:
                    if action.changed_vault is not None and self.get_vault(action.changed_vault) is not None:
                        raise vault_changed() from exc
                    raise action.on_condition_failure from exc
            raise transaction_cancelled() from exc
        except BotoCoreError as exc:
            logger.error("TransactWriteItems failed", extra={"error_code": aws_error_code(exc)})
            raise storage_error() from exc
