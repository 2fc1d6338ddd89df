"""Benchmarks: ``python -m benchmarks [NAME ...] [--quick]``.

Each benchmark is a module with ``run(options: Options) -> int`` registered in
:data:`benchmarks.__main__.BENCHMARKS`. It prints a table and writes
``<out_dir>/<name>.json``. Helpers shared by benchmarks live here.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Options:
    quick: bool = False  # fewer repeats, for smoke runs
    out_dir: Path = Path("bench-results")


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


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def write_results(options: Options, name: str, results: dict[str, Any]) -> Path:
    options.out_dir.mkdir(parents=True, exist_ok=True)
    path = options.out_dir / f"{name}.json"
    document = {
        "benchmark": name,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": options.quick,
        **results,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
