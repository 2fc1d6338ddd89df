"""A bounded, thread-safe LRU cache that builds each missing entry exactly once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

V = TypeVar("V")


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


class BuildOnceCache(Generic[V]):
    """Maps a key to ``build(key)``, keeping the ``maxsize`` most recently used entries.

    Lookups take a short lock; builds take a second lock, so a hit never waits for a
    build and two threads asking for the same missing key build it once (the second
    finds it on its re-check). ``maxsize`` 0 disables storage: every lookup builds.
    """

    def __init__(self, maxsize: int, build: Callable[[str], V]) -> None:
        if maxsize < 0:
            raise ValueError("cache size must not be negative")
        self._maxsize = maxsize
        self._build = build
        self._entries: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def _lookup(self, key: str) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self._hits += 1
            return value

    def get(self, key: str) -> V:
        value = self._lookup(key)
        if value is not None:
            return value
        with self._build_lock:
            value = self._lookup(key)
            if value is not None:
                return value
            value = self._build(key)
            with self._lock:
                self._misses += 1
                if self._maxsize:
                    self._entries[key] = value
                    while len(self._entries) > self._maxsize:
                        self._entries.popitem(last=False)
        return value

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self._hits, self._misses, self._maxsize, len(self._entries))
