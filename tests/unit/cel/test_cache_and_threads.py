"""Compile once per distinct text (bounded LRU), and correct results under concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import celpy
import pytest

from unit.cel.support import FIXED_NOW
from vault.enclave.cel import CelEngine


@pytest.fixture
def parse_count(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Texts handed to cel-python's parser, recorded by wrapping ``Environment.compile``."""
    seen: list[str] = []
    original = celpy.Environment.compile

    def counting(self: celpy.Environment, text: str) -> Any:
        seen.append(text)
        # Widen the window in which two threads could both miss the cache.
        time.sleep(0.01)
        return original(self, text)

    monkeypatch.setattr(celpy.Environment, "compile", counting)
    yield seen


def test_same_text_is_compiled_once(parse_count: list[str]) -> None:
    engine = CelEngine()
    fields: dict[str, str | None] = {"n": "Bob"}
    for name in ("a", "b", "c"):
        result = engine.evaluate(fields, {name: "n.to_uppercase()", "other": "n.to_uppercase()"})
        assert result.values[name] == "BOB"
    assert parse_count == ["n.to_uppercase()"]
    info = engine.cache_info()
    assert (info.misses, info.hits, info.currsize, info.maxsize) == (1, 5, 1, 1024)


def test_distinct_texts_are_compiled_separately(parse_count: list[str]) -> None:
    engine = CelEngine()
    engine.evaluate({}, {"a": "1 + 1", "b": "1+1"})
    assert parse_count == ["1 + 1", "1+1"]


def test_compile_failures_are_cached_too(parse_count: list[str]) -> None:
    engine = CelEngine()
    for _ in range(3):
        result = engine.evaluate({}, {"bad": "1 +"})
        assert result.errors[0].startswith("[bad] Compile Error:")
    assert parse_count == ["1 +"]


def test_least_recently_used_entry_is_evicted(parse_count: list[str]) -> None:
    engine = CelEngine(cache_size=2)
    for text in ("1", "2", "1", "3", "1", "2"):
        engine.evaluate({}, {"x": text})
    # "2" was the least recently used when "3" arrived, so it is compiled again at the end.
    assert parse_count == ["1", "2", "3", "2"]
    assert engine.cache_info().currsize == 2


def test_cache_size_zero_compiles_every_time(parse_count: list[str]) -> None:
    engine = CelEngine(cache_size=0)
    for _ in range(3):
        assert engine.evaluate({}, {"x": "40 + 2"}).values["x"] == 42
    assert parse_count == ["40 + 2"] * 3


def test_negative_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cache size"):
        CelEngine(cache_size=-1)


def test_concurrent_misses_compile_once(parse_count: list[str]) -> None:
    engine = CelEngine()
    barrier = threading.Barrier(8)

    def work(index: int) -> object:
        barrier.wait()
        return engine.evaluate({"n": f"name{index}"}, {"out": "n.to_uppercase() + '!'"}).values["out"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(work, range(8)))
    assert outputs == [f"NAME{index}!" for index in range(8)]
    assert parse_count == ["n.to_uppercase() + '!'"]


EXPRESSIONS = {
    "upper": "first_name.to_uppercase()",
    "digest": "ssn.sha256()",
    "masked": "'***-**-' + ssn.substring(size(ssn) - 4)",
    "age": "date(dob).age()",
    "initials": "[first_name, last_name].map(n, n.substring(0, 1)).filter(i, i != '')",
    "label": "age >= 18 ? 'adult' : 'minor'",
    "round_trip": "first_name.hex_encode().hex_decode() == first_name",
}


def _fields(index: int) -> dict[str, str | None]:
    return {
        "first_name": f"First{index}",
        "last_name": f"Last{index}",
        "ssn": f"{index:03d}-45-{index:04d}",
        "dob": f"{1950 + index % 60}-0{1 + index % 9}-1{index % 10}",
    }


def test_many_threads_get_correct_results() -> None:
    engine = CelEngine(clock=lambda: FIXED_NOW)
    requests = [_fields(index) for index in range(200)]
    # Reference results, one request at a time on a separate engine.
    reference = CelEngine(clock=lambda: FIXED_NOW)
    expected = [reference.evaluate(fields, EXPRESSIONS) for fields in requests]
    assert all(result.errors == [] for result in expected)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda fields: engine.evaluate(fields, EXPRESSIONS), requests))

    assert [result.values for result in results] == [result.values for result in expected]
    assert all(result.errors == [] for result in results)
    # Every distinct text compiled exactly once despite 16 threads.
    assert engine.cache_info().misses == len(EXPRESSIONS)
    assert results[7].values["masked"] == "***-**-0007"
    assert results[7].values["upper"] == "FIRST7"
