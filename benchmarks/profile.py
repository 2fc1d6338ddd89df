"""Where an end-to-end decrypt spends its time: ``python -m benchmarks.profile``.

Brings a cold emulator up, drives decrypts from one client, and samples every emulator
process with py-spy (``pip install py-spy``; needs ptrace permission on the emulator's
processes) while it runs. Writes ``<out-dir>/profile-<process>.txt`` (py-spy's collapsed
stacks) and prints, per process, the functions that the most CPU samples were in; with
``--idle`` idle threads are sampled too, which shows where requests wait (sockets,
locks) rather than where CPU goes.

    python -m benchmarks.profile --backend moto --seconds 10
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import requests

from benchmarks.e2e import VAULT_FIELDS, decrypt_once, decrypt_request_body, decrypt_url, expected_decryption
from benchmarks.emulator_run import running_emulator

MAX_SECONDS = 120.0
TOP = 15
#: Frames on every stack of a thread or process, which say nothing about where time goes.
_FRAMEWORK = ("Thread._bootstrap", "Thread.run ", "_run_module_as_main", "_run_code", "<module>")


def _leaf_totals(path: Path, *, own: bool) -> Counter[str]:
    """Samples per function: where the sample ended (``own``) or anywhere on its stack."""
    totals: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if own:
            totals[frames[-1]] += int(count)
        else:
            for frame in set(frames[1:]):  # the first frame is the thread
                if not frame.startswith(_FRAMEWORK):
                    totals[frame] += int(count)
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="moto")
    parser.add_argument("--seconds", type=float, default=10.0, help=f"sampling time (max {MAX_SECONDS:g})")
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--idle", action="store_true", help="sample idle threads too (waits)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 1.0), MAX_SECONDS)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with running_emulator(args.backend) as started, requests.Session() as session:
        session.trust_env = False
        created = session.post(f"{started.state.api_url}/vaults", json=VAULT_FIELDS, timeout=30)
        created.raise_for_status()
        url, body, expected = (
            decrypt_url(started, str(created.json()["id"])),
            decrypt_request_body(),
            expected_decryption(),
        )
        stop = threading.Event()
        count = [0]

        def load() -> None:
            deadline = time.monotonic() + seconds + 5
            while not stop.is_set() and time.monotonic() < deadline:
                decrypt_once(session, url, body, expected)
                count[0] += 1

        driver = threading.Thread(target=load, name="profile-load")
        driver.start()
        samplers: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for label, pids in started.processes().items():
            for pid in pids:
                output = args.out_dir / f"profile-{label}-{pid}.txt"
                command = [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    str(args.rate),
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(output),
                    "--nonblocking",
                    *(["--idle"] if args.idle else []),
                ]
                samplers[f"{label}-{pid}"] = (
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                    output,
                )
        for process, _ in samplers.values():
            try:
                process.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        stop.set()
        driver.join(timeout=60)
    print(f"{count[0]} decrypts in about {seconds:.0f} s, {args.backend} backend")
    for name, (_, output) in samplers.items():
        if not output.exists():
            print(f"\n[{name}] no samples (not a Python process, or ptrace refused)")
            continue
        inclusive = _leaf_totals(output, own=False)
        total = sum(_leaf_totals(output, own=True).values()) or 1
        what = "all samples, idle included" if args.idle else "CPU samples"
        print(f"\n[{name}] {output}: {total} {what}; share of samples with the function on the stack")
        for frame, samples in inclusive.most_common(TOP):
            print(f"  {100 * samples / total:5.1f}%  {frame[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
