"""moto's DynamoDB requests isolated per table, as DynamoDB isolates its item operations.

moto serves requests on many threads and applies an ``UpdateItem`` (or a transaction's
``Update``) to the stored item in place, one attribute after another; a ``GetItem`` that
runs meanwhile serialises the item half-way: with several Lambda environments calling at
once, one decrypt returned ``first_name`` from one PATCH and ``last_name`` from another.
DynamoDB never shows that (its reads see an item as one write left it, and a transaction's
writes all or none of them); DynamoDB Local, under LocalStack, is consistent too.

:func:`install` makes every request of moto's DynamoDB handler hold the lock of each table
it names, from parsing its parameters to serialising its answer, so a read sees an item
before or after a write, never during it. Locks are taken in name order, so two
transactions over the same tables cannot deadlock. Requests on other tables, and on other
services, are not held up.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from moto.dynamodb.responses import DynamoHandler

_install_lock = threading.Lock()
_MARK = "_nitro_vault_table_isolation"
#: Operations whose table names sit in a list of actions or a map of requests.
_ACTION_LISTS = ("TransactItems",)
_REQUEST_MAPS = ("RequestItems",)


class TableLocks:
    """One lock per (account, region, table); :meth:`hold` takes those of a request's tables."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}

    def _lock(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    @contextlib.contextmanager
    def hold(self, account: str, region: str, tables: set[str]) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            for name in sorted(tables):
                held.enter_context(self._lock((account, region, name)))
            yield


def table_names(params: Any) -> set[str]:
    """The tables a DynamoDB request names (``TableName``, transactions' actions, batches' maps)."""
    if not isinstance(params, dict):
        return set()
    names: set[str] = set()
    direct = params.get("TableName")
    if isinstance(direct, str):
        names.add(direct)
    for key in _ACTION_LISTS:
        for entry in params.get(key) or ():
            if isinstance(entry, dict):
                for action in entry.values():
                    name = action.get("TableName") if isinstance(action, dict) else None
                    if isinstance(name, str):
                        names.add(name)
    for key in _REQUEST_MAPS:
        requests = params.get(key)
        if isinstance(requests, dict):
            names.update(name for name in requests if isinstance(name, str))
    return names


LOCKS = TableLocks()


def install() -> None:
    """Patch moto's DynamoDB handler in this process (idempotent)."""
    with _install_lock:
        original: Callable[..., Any] = DynamoHandler.call_action
        if getattr(original, _MARK, False):
            return

        # functools.wraps keeps moto's method as __wrapped__, which the contract test reads.
        @functools.wraps(original)
        def call_action(self: DynamoHandler) -> Any:
            # moto has parsed the request's parameters by now (setup_class); an unparsed
            # request names no table and runs unlocked, as before.
            tables = table_names(getattr(self, "params", None))
            with LOCKS.hold(self.current_account, self.region, tables):
                return original(self)

        setattr(call_action, _MARK, True)
        DynamoHandler.call_action = call_action  # type: ignore[method-assign]  # patching moto, see above
