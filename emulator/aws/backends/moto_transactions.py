"""moto's ``TransactWriteItems`` without a deep copy of every table it writes to.

moto backs up a table before a transaction by deep-copying the whole table, once per
item of the transaction, so that it can restore the table if the transaction is
cancelled. The vault writes an audit item in a transaction on every create and
decrypt, so that copy grows with the audit log: measured on the emulator, a one-item
transaction took ~3.5 ms on a fresh table and ~26 ms after 600 decrypts, and it keeps
growing for as long as the emulator runs.

:func:`install` keeps moto's transaction code and its rollback, and changes only what
the backup copies: the table object and its item containers shallowly, the items the
transaction names (the only ones it can change, including in place by an update)
deeply, and the stream records. Restoring that backup gives the same table as
restoring a full deep copy. A transaction whose keys cannot be read up front is
backed up by moto's full copy, as before. Deep copies made anywhere else (backups,
restores) are unchanged.

moto also registers every model object it creates, deep copies included, and never
lets go of them: with full copies the emulator's memory grew with every write (RSS of
its processes ~1 GB after 600 decrypts). The backup table here is not registered.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_Key = tuple[DynamoType, DynamoType | None]
_local = threading.local()
_install_lock = threading.Lock()
_MARK = "_nitro_vault_light_backup"


def _plan(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> dict[int, list[_Key]] | None:
    """id(table) -> keys the transaction writes or checks; ``None`` if any cannot be read."""
    plan: dict[int, list[_Key]] = {}
    try:
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = backend.tables.get(op.get("TableName"))
            if table is None:
                continue  # moto refuses the item; nothing of that table is copied
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(attrs[table.hash_key_attr])
            range_key = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
            plan.setdefault(id(table), []).append((hash_key, range_key))
    except Exception:  # noqa: BLE001 - malformed input: let moto copy in full and report it
        return None
    return plan


def _backup(table: Table, keys: list[_Key]) -> Table:
    # Not through moto's BaseModel.__new__, whose registry of instances (for its
    # introspection API) would keep every backup, and its item containers, alive.
    clone: Table = object.__new__(type(table))
    clone.__dict__.update(table.__dict__)
    items: defaultdict[Any, Any] = defaultdict(dict)
    ranged = table.range_key_attr is not None
    for hash_key, bucket in table.items.items():
        items[hash_key] = dict(bucket) if ranged else bucket
    for hash_key, range_key in keys:
        found = table.items.get(hash_key)
        current = found.get(range_key) if ranged and found is not None else found
        if current is None:
            continue
        if ranged:
            items[hash_key][range_key] = copy.deepcopy(current)
        else:
            items[hash_key] = copy.deepcopy(current)
    clone.items = items
    # Stream records name their table: the copies must name the backup, as a full copy does.
    clone.stream_shard = copy.deepcopy(table.stream_shard, {id(table): clone})
    return clone


def _table_deepcopy(self: Table, memo: dict[int, Any]) -> Table:
    plan: dict[int, list[_Key]] | None = getattr(_local, "plan", None)
    keys = plan.get(id(self)) if plan is not None else None
    if keys is not None:
        # moto copies the table once per item, all before the first write: every copy of
        # one transaction is the same state, so the first serves them all (a transaction
        # of 50 items made 50 backups of 50 items each).
        backups: dict[int, Table] = _local.backups
        clone = backups.get(id(self))
        if clone is None:
            clone = backups[id(self)] = _backup(self, keys)
        return clone
    # What copy.deepcopy does for a plain object.
    clone = cast(Table, type(self).__new__(type(self)))
    memo[id(self)] = clone
    clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
    return clone


def install() -> None:
    """Patch moto in this process (idempotent)."""
    with _install_lock:
        original: Callable[..., Any] = DynamoDBBackend.transact_write_items
        if getattr(original, _MARK, False):
            return

        # functools.wraps keeps moto's method as __wrapped__, which the contract test reads.
        @functools.wraps(original)
        def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
            previous = getattr(_local, "plan", None), getattr(_local, "backups", None)
            _local.plan, _local.backups = _plan(self, transact_items), {}
            try:
                original(self, transact_items)
            finally:
                _local.plan, _local.backups = previous

        setattr(transact_write_items, _MARK, True)
        # moto's Table declares no __deepcopy__, and mypy forbids assigning to a method.
        Table.__deepcopy__ = _table_deepcopy  # type: ignore[attr-defined]  # patching moto, see above
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]  # as above
