"""``python -m benchmarks [NAME ...] [--quick] [--backends moto,localstack] [--clients 1,4,16]``.

Runs the registered benchmarks (all of them when no NAME is given), then prints one
summary table of their figures and writes ``<out-dir>/results.json`` and a chart,
``<out-dir>/bench.png`` (when matplotlib is installed). Each benchmark also writes its
own ``<out-dir>/<name>.json``.

To add one, write a module with ``run(options: benchmarks.Options) -> int`` that writes
``<name>.json`` with a ``figures`` list, and add a line to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    DEFAULT_CLIENTS,
    PERCENTILE_METHOD,
    LoadMonitor,
    Options,
    describe_load,
    format_value,
    table,
)
from benchmarks.chart import draw

#: name -> module defining ``run(options) -> int``
BENCHMARKS: dict[str, str] = {
    "enclave": "benchmarks.enclave",
    "key_release": "benchmarks.key_release",
    "e2e": "benchmarks.e2e",
    "batch": "benchmarks.batch",
    "startup": "benchmarks.startup",
    "authorization": "benchmarks.authorization",
}
KNOWN_BACKENDS = ("moto", "localstack", "localstack-container")
MAX_CLIENTS = 64
MAX_REQUESTS = 100_000
MAX_REPEATS = 50


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {text!r}") from None
    if not values or any(not 1 <= value <= MAX_CLIENTS for value in values):
        raise argparse.ArgumentTypeError(f"client counts must be within 1..{MAX_CLIENTS}")
    return values


def _backends(text: str) -> tuple[str, ...]:
    values = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [value for value in values if value not in KNOWN_BACKENDS]
    if not values or unknown:
        raise argparse.ArgumentTypeError(
            f"backends are a comma-separated subset of {', '.join(KNOWN_BACKENDS)}"
        )
    return values


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmarks (all without NAME), print a summary table, write "
        "<out-dir>/results.json, <out-dir>/<name>.json and <out-dir>/bench.png.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="few repeats and moto only (CI smoke run)")
    parser.add_argument("--out-dir", type=Path, default=Options().out_dir, help="where results go")
    parser.add_argument(
        "--backends",
        type=_backends,
        help="emulator backends for e2e and startup (default moto,localstack; moto with --quick)",
    )
    parser.add_argument(
        "--clients",
        type=_int_list,
        default=DEFAULT_CLIENTS,
        help="concurrent clients of the end-to-end load (default 1,4,16)",
    )
    parser.add_argument(
        "--requests",
        type=_bounded(1, MAX_REQUESTS),
        help="end-to-end decrypts per concurrency level (default 200; 12 with --quick)",
    )
    parser.add_argument(
        "--repeats", type=_bounded(1, MAX_REPEATS), help="cold starts per backend (default 3; 1 with --quick)"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip bench.png")
    return parser.parse_args(argv)


def _summary_rows(figures: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for entry in figures:
        ratio = entry.get("ratio")
        verdict = ""
        if entry.get("target"):
            verdict = f"{entry['target']}: " + ("ok" if entry.get("ok") else "MISSED")
        rows.append(
            [
                entry["group"],
                entry.get("backend") or "",
                entry["name"],
                format_value(float(entry["value"])),
                entry["unit"],
                entry["clock"],
                f"{ratio:.2f}x {entry['baseline']}" if ratio is not None else "",
                verdict,
            ]
        )
    return rows


def aggregate(options: Options, names: Sequence[str], argv: Sequence[str], load: dict[str, Any]) -> Path:
    """``results.json``: every benchmark's document and all figures, with the run's context."""
    documents: dict[str, Any] = {}
    for name in names:
        path = options.out_dir / f"{name}.json"
        if path.exists():
            documents[name] = json.loads(path.read_text())
    figures = [entry for document in documents.values() for entry in document.get("figures", [])]
    results = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": options.quick,
        "load": load,
        "percentile_method": PERCENTILE_METHOD,
        "figures": figures,
        "benchmarks": documents,
    }
    path = options.out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        print(
            f"python -m benchmarks: error: unknown benchmark(s): {', '.join(unknown)}; "
            f"known: {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    options = Options(
        quick=args.quick,
        out_dir=args.out_dir,
        backends=args.backends,
        clients=args.clients,
        requests=args.requests,
        repeats=args.repeats,
    )
    names = list(args.names or BENCHMARKS)
    status = 0
    with LoadMonitor() as load:
        for name in names:
            # A stale document from an earlier run must not enter this run's summary.
            (options.out_dir / f"{name}.json").unlink(missing_ok=True)
            module = importlib.import_module(BENCHMARKS[name])
            print(f"== {name} ==")
            status = max(status, int(module.run(options)))
            print()
    load_result = load.result()
    path = aggregate(options, names, arguments, load_result)
    results = json.loads(path.read_text())
    print("== summary ==")
    print(
        table(
            ["group", "backend", "figure", "value", "unit", "clock", "x lower bound", "target"],
            _summary_rows(results["figures"]),
        )
    )
    print(f"\npercentiles: {PERCENTILE_METHOD}")
    print(f"whole run: {describe_load(load_result)}")
    print(f"results: {path}")
    if not args.no_chart:
        chart = draw(results, options.out_dir / "bench.png")
        print(f"chart: {chart}" if chart else "chart: skipped (matplotlib is not installed)")
    return status


if __name__ == "__main__":
    sys.exit(main())
