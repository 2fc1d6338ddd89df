"""``python -m benchmarks [NAME ...] [--quick] [--out-dir DIR]``: run registered benchmarks.

To add one, write a module with ``run(options: benchmarks.Options) -> int`` and add a
line to :data:`BENCHMARKS`. With no names, every registered benchmark runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import Options

#: name -> module defining ``run(options) -> int``
BENCHMARKS: dict[str, str] = {
    "enclave": "benchmarks.enclave",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--out-dir", type=Path, default=Options().out_dir, help="where JSON results go")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    options = Options(quick=args.quick, out_dir=args.out_dir)
    status = 0
    for name in args.names or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        print(f"== {name} ==")
        status = max(status, int(module.run(options)))
        print()
    return status


if __name__ == "__main__":
    sys.exit(main())
