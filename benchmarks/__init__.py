"""Benchmarks: ``python -m benchmarks [NAME ...] [--quick] [--backends ...]``.

Each benchmark is a module with ``run(options: Options) -> int`` registered in
:data:`benchmarks.__main__.BENCHMARKS`. It prints its own tables and writes
``<out_dir>/<name>.json``, whose ``figures`` list (built with :func:`figure`) feeds the
summary table, ``results.json`` and the chart. Helpers shared by benchmarks live here.

Clocks: CPU-bound work is timed with CPU time (``time.thread_time`` or
``time.process_time``), which other processes on the machine do not inflate; anything
that crosses processes or sockets is timed with wall time, repeated, and reported as
medians and percentiles, together with the machine's load while it ran
(:class:`LoadMonitor`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.host import procfs

#: Backends the emulator benchmarks use when ``--backends`` is not given.
DEFAULT_BACKENDS: tuple[str, ...] = ("moto", "localstack")
QUICK_BACKENDS: tuple[str, ...] = ("moto",)
DEFAULT_CLIENTS: tuple[int, ...] = (1, 4, 16)


@dataclass(frozen=True)
class Options:
    quick: bool = False  # fewer repeats, for smoke runs
    out_dir: Path = Path("bench-results")
    #: Emulator backends to measure; ``None``: moto and LocalStack (moto only with ``quick``).
    backends: tuple[str, ...] | None = None
    #: Concurrent clients of the end-to-end load.
    clients: tuple[int, ...] = DEFAULT_CLIENTS
    #: Requests per concurrency level; ``None``: a default that depends on ``quick``.
    requests: int | None = None
    #: Cold starts per backend; ``None``: a default that depends on ``quick``.
    repeats: int | None = None

    @property
    def selected_backends(self) -> tuple[str, ...]:
        if self.backends is not None:
            return self.backends
        return QUICK_BACKENDS if self.quick else DEFAULT_BACKENDS

    def scaled(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def best_of(
    repeats: int, batch: Callable[[], object], clock: Callable[[], float] = time.perf_counter
) -> float:
    """The fastest of ``repeats`` runs of ``batch``, in seconds of ``clock``.

    For CPU-bound work pass ``clock=time.thread_time``: CPU time of the calling thread
    is not inflated when other processes take the cores, which wall time is.
    """
    timings = []
    for _ in range(repeats):
        started = clock()
        batch()
        timings.append(clock() - started)
    return min(timings)


def samples(
    repeats: int, batch: Callable[[], object], clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """``repeats`` timings of ``batch`` in seconds of ``clock``."""
    timings = []
    for _ in range(repeats):
        started = clock()
        batch()
        timings.append(clock() - started)
    return timings


#: How every percentile in the benchmarks and the load tool is computed; printed beside the figures.
PERCENTILE_METHOD = "linear interpolation between order statistics (numpy's default, 'linear')"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolating linearly between order statistics.

    The one definition for ``nox -s bench`` and ``nox -s load``, so their figures compare
    (see :data:`PERCENTILE_METHOD`).
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """n, min, p50, p90, p99, max and mean of ``values`` multiplied by ``scale``."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values) * scale,
        "p50": percentile(values, 50) * scale,
        "p90": percentile(values, 90) * scale,
        "p99": percentile(values, 99) * scale,
        "max": max(values) * scale,
        "mean": statistics.fmean(values) * scale,
    }


def figure(
    group: str,
    name: str,
    value: float,
    unit: str,
    *,
    clock: str,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target: str | None = None,
    ok: bool | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """One row of the summary: ``value`` and, when a lower bound was measured in the same
    run (``baseline``, in the same unit), its ratio to that bound."""
    ratio = value / baseline_value if baseline_value else None
    return {
        "group": group,
        "name": name,
        "value": value,
        "unit": unit,
        "clock": clock,
        "baseline": baseline,
        "baseline_value": baseline_value,
        "ratio": ratio,
        "target": target,
        "ok": ok,
        "backend": backend,
    }


def format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


class LoadMonitor:
    """The machine's load while a block ran: load averages and the share of CPU busy.

    ``with LoadMonitor() as load: ...`` then ``load.result()``. The busy share counts
    every process, this benchmark and the emulator included; subtract what the
    benchmark reports as its own CPU to see what others used.
    """

    def __init__(self) -> None:
        self._start: tuple[int, int] = (0, 0)
        self._end: tuple[int, int] = (0, 0)
        self._load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._wall = 0.0

    def __enter__(self) -> LoadMonitor:
        self._load_start = os.getloadavg()
        self._start = procfs.machine_jiffies()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = procfs.machine_jiffies()
        self._load_end = os.getloadavg()
        self._wall = time.perf_counter() - self._wall

    def result(self) -> dict[str, Any]:
        busy = self._end[0] - self._start[0]
        total = self._end[1] - self._start[1]
        return {
            "cpus": os.cpu_count(),
            "loadavg_1m_start": round(self._load_start[0], 2),
            "loadavg_1m_end": round(self._load_end[0], 2),
            "machine_busy_pct": round(100.0 * busy / total, 1) if total > 0 else None,
            "wall_s": round(self._wall, 3),
        }


def describe_load(load: dict[str, Any]) -> str:
    busy = load.get("machine_busy_pct")
    busy_text = f"{busy:.0f}% of {load.get('cpus')} CPUs busy" if busy is not None else "busy share unknown"
    return (
        f"load: {busy_text}, 1-min load average {load.get('loadavg_1m_start')}"
        f" -> {load.get('loadavg_1m_end')} over {load.get('wall_s')} s"
    )


def write_results(options: Options, name: str, results: dict[str, Any]) -> Path:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"{name}.json"
    document = {
        "benchmark": name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": options.quick,
        **results,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
