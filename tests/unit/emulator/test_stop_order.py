"""Stopping components: each after everything that needs it, independent ones side by side."""

from __future__ import annotations

import threading
import time

from emulator.daemon.graph import stop_all


def test_a_component_stops_only_after_everything_that_needs_it() -> None:
    needs = {"backend": (), "proxy": ("backend",), "front": ("backend",), "gateway": ("proxy", "front")}
    started = ["backend", "proxy", "front", "gateway"]
    running = set(started)
    lock = threading.Lock()
    violations: list[str] = []

    def stop(name: str) -> None:
        with lock:
            still_needing = [other for other in running if name in needs[other]]
            if still_needing:
                violations.append(f"{name} before {still_needing}")
        time.sleep(0.01)
        with lock:
            running.discard(name)

    order = stop_all(started, needs, stop)
    assert violations == []
    assert sorted(order) == sorted(started)
    assert order[0] == "gateway" and order[-1] == "backend"


def test_independent_components_stop_in_parallel() -> None:
    started = [f"c{i}" for i in range(5)]
    began = time.monotonic()
    stop_all(started, {name: () for name in started}, lambda name: time.sleep(0.2))
    # Five 0.2 s stops in sequence would take 1 s.
    assert time.monotonic() - began < 0.6


def test_needs_outside_the_started_set_are_ignored_and_a_cycle_still_stops() -> None:
    stopped: list[str] = []
    stop_all(["a"], {"a": ("never-started",)}, stopped.append)
    assert stopped == ["a"]
    stopped.clear()
    order = stop_all(["a", "b"], {"a": ("b",), "b": ("a",)}, stopped.append)
    assert sorted(stopped) == ["a", "b"] and sorted(order) == ["a", "b"]
