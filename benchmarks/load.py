"""Load against a running emulator: ``python -m benchmarks.load --clients N --duration S --max-requests M``.

N client threads, each with its own HTTP connection, mix creates and decrypts (with CEL
expressions) for ``duration`` seconds or until ``max-requests`` requests were sent,
whichever comes first; no request starts after that and each one is bounded by the
client timeout, so a run ends within ``duration + timeout`` seconds. Only loopback API
URLs are accepted: this is for the local emulator, never a deployed stage.

Reported (and written as JSON to ``--output``, ``bench-results/load.json`` by
default): throughput, p50/p90/p99 latency per operation, errors (the target is 0,
and the exit status is 1 otherwise), and the emulator's resident memory before and
after -- the RSS of every process its state file lists, and their descendants (the
enclave program runs below its sandbox's pid).

Note that the emulator's gateway runs one Lambda invocation at a time, as one Lambda
execution environment does: more clients raise latency, not throughput.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import PERCENTILE_METHOD, percentile
from emulator.daemon.config import DEFAULT_STATE_DIR, StateLayout
from emulator.daemon.state import EmulatorState, read_state
from emulator.host import procfs
from emulator.tools.client import VaultApiError, VaultClient

MAX_CLIENTS = 64
MAX_DURATION = 600.0
MAX_REQUESTS = 1_000_000
REQUEST_TIMEOUT = 15.0
#: Error samples kept in the report (the count is exact).
MAX_ERROR_SAMPLES = 20
EXPRESSIONS: tuple[dict[str, str], ...] = (
    {"age": "date(dob).age()", "ssn_masked": '"***-**-" + ssn4'},
    {"email_hash": "sha256(email)", "initial": "first_name.substring(0, 1)"},
)
FIELDS = ("first_name", "dob", "ssn4", "email")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadConfig:
    api_url: str
    clients: int = 4
    duration: float = 30.0
    max_requests: int = 100_000
    #: Share of requests that create a vault; the rest decrypt one.
    create_ratio: float = 0.25
    seed: int = 0
    timeout: float = REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= MAX_CLIENTS:
            raise LoadError(f"--clients must be within 1..{MAX_CLIENTS}")
        if not 0 < self.duration <= MAX_DURATION:
            raise LoadError(f"--duration must be within (0, {MAX_DURATION:g}] seconds")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise LoadError(f"--max-requests must be within 1..{MAX_REQUESTS}")
        if not 0 <= self.create_ratio <= 1:
            raise LoadError("--create-ratio must be within 0..1")
        require_loopback(self.api_url)


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadError(f"the load test only targets an emulator on loopback, not {host or url!r}")


def random_pii(rng: random.Random) -> dict[str, str]:
    year = rng.randint(1940, 2005)
    ssn = f"{rng.randint(100, 665)}{rng.randint(10, 99)}{rng.randint(1000, 9999)}"
    name = rng.choice(FIRST_NAMES)
    return {
        "first_name": name,
        "last_name": "Loadtest",
        "email": f"{name.lower()}.{rng.randint(0, 10**6)}@example.com",
        "dob": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "ssn9": ssn,
        "country": "US",
    }


# -- measurement -----------------------------------------------------------------------------


@dataclass
class Tally:
    """Latencies and errors of one run, shared by the client threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "decrypt": []})
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    started: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, limit: int) -> bool:
        """Take one of the ``limit`` requests of the run; False once they are all taken."""
        with self.lock:
            if self.started >= limit:
                return False
            self.started += 1
            return True

    def ok(self, operation: str, seconds: float) -> None:
        with self.lock:
            self.latencies[operation].append(seconds)

    def error(self, operation: str, description: str) -> None:
        with self.lock:
            self.errors[operation] = self.errors.get(operation, 0) + 1
            if len(self.error_samples) < MAX_ERROR_SAMPLES:
                self.error_samples.append(f"{operation}: {description}")


def summary(values: list[float], errors: int, seconds: float) -> dict[str, Any]:
    ordered = sorted(values)
    ms = [value * 1000 for value in ordered]
    return {
        "count": len(values),
        "errors": errors,
        "throughput_per_s": round(len(values) / seconds, 2) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(ms, 50), 2) if ms else 0.0,
        "p90_ms": round(percentile(ms, 90), 2) if ms else 0.0,
        "p99_ms": round(percentile(ms, 99), 2) if ms else 0.0,
        "percentile_method": PERCENTILE_METHOD,
        "max_ms": round(ms[-1], 2) if ms else 0.0,
    }


def emulator_rss_kib(state: EmulatorState | None) -> dict[str, Any]:
    """Resident memory of the emulator: its state file's pids and all their descendants."""
    if state is None:
        return {"pids": [], "rss_kib": None}
    pids = procfs.tree(state.all_pids())
    total = sum(procfs.rss_kib(pid) for pid in pids)
    return {"pids": sorted(pids), "rss_kib": total}


# -- the clients -----------------------------------------------------------------------------


class Client(threading.Thread):
    def __init__(self, index: int, config: LoadConfig, tally: Tally, deadline: float) -> None:
        super().__init__(name=f"load-client-{index}", daemon=True)
        self.config = config
        self.tally = tally
        self.deadline = deadline
        self.rng = random.Random(config.seed * 1000 + index)
        self.vaults: list[str] = []

    def run(self) -> None:
        with VaultClient(self.config.api_url, timeout=self.config.timeout) as api:
            while time.monotonic() < self.deadline and self.tally.claim(self.config.max_requests):
                # A client decrypts only its own vaults, so its first request is a create.
                if not self.vaults or self.rng.random() < self.config.create_ratio:
                    self._timed("create", self._create, api)
                else:
                    self._timed("decrypt", self._decrypt, api)

    def _create(self, api: VaultClient) -> None:
        self.vaults.append(api.create(random_pii(self.rng)))

    def _decrypt(self, api: VaultClient) -> None:
        result = api.decrypt(self.rng.choice(self.vaults), FIELDS, "load", self.rng.choice(EXPRESSIONS))
        if result.errors or any(value is None for value in result.data.values()):
            raise LoadError(f"decrypt reported errors: {result.errors}")

    def _timed(self, operation: str, call: Callable[[VaultClient], None], api: VaultClient) -> None:
        began = time.perf_counter()
        try:
            call(api)
        except VaultApiError as exc:
            self.tally.error(operation, f"{exc.status} {exc.code or ''}".strip())
        except Exception as exc:  # noqa: BLE001 - every failure counts as an error of the run
            self.tally.error(operation, type(exc).__name__)
        else:
            self.tally.ok(operation, time.perf_counter() - began)


def run_load(config: LoadConfig, state: EmulatorState | None = None) -> dict[str, Any]:
    """Run the load and return the report (see the module docstring)."""
    memory_before = emulator_rss_kib(state)
    tally = Tally()
    began = time.monotonic()
    deadline = began + config.duration
    clients = [Client(index, config, tally, deadline) for index in range(config.clients)]
    for client in clients:
        client.start()
    for client in clients:
        # Bounded: no request starts after the deadline, and each one has a timeout.
        client.join(timeout=max(0.0, deadline - time.monotonic()) + config.timeout + 5)
    seconds = time.monotonic() - began
    memory_after = emulator_rss_kib(state)
    with tally.lock:
        operations = {
            name: summary(values, tally.errors.get(name, 0), seconds)
            for name, values in tally.latencies.items()
        }
        errors = sum(tally.errors.values())
        samples = list(tally.error_samples)
    completed = sum(op["count"] for op in operations.values())
    return {
        "kind": "emulator-load",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {**asdict(config)},
        "backend": state.backend if state is not None else None,
        "seconds": round(seconds, 3),
        "requests": completed + errors,
        "completed": completed,
        "errors": errors,
        "error_samples": samples,
        "throughput_per_s": round(completed / seconds, 2) if seconds > 0 else 0.0,
        "operations": operations,
        "memory": {
            "rss_kib_before": memory_before["rss_kib"],
            "rss_kib_after": memory_after["rss_kib"],
            "processes_before": len(memory_before["pids"]),
            "processes_after": len(memory_after["pids"]),
        },
        "unfinished_clients": sum(client.is_alive() for client in clients),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['config']['clients']} clients, {report['seconds']:.1f} s, {report['requests']} requests, "
        f"{report['throughput_per_s']:.1f} req/s, errors {report['errors']}",
        f"{'operation':<10} {'count':>7} {'req/s':>8} "
        f"{'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}",
    ]
    for name, op in report["operations"].items():
        lines.append(
            f"{name:<10} {op['count']:>7} {op['throughput_per_s']:>8.1f} {op['p50_ms']:>9.1f} "
            f"{op['p90_ms']:>9.1f} {op['p99_ms']:>9.1f} {op['max_ms']:>9.1f}"
        )
    memory = report["memory"]
    if memory["rss_kib_before"] is not None:
        lines.append(
            f"emulator RSS: {memory['rss_kib_before'] / 1024:.0f} MiB before, "
            f"{memory['rss_kib_after'] / 1024:.0f} MiB after ({memory['processes_after']} processes)"
        )
    for sample in report["error_samples"]:
        lines.append(f"error: {sample}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help=f"concurrent clients (1..{MAX_CLIENTS})")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests")
    parser.add_argument("--create-ratio", type=float, default=0.25, help="share of creates (default 0.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR), help="the emulator's state dir"
    )
    parser.add_argument("--api-url", help="the API's URL (default: from the state dir); loopback only")
    parser.add_argument("--output", type=Path, default=Path("bench-results/load.json"))
    args = parser.parse_args(argv)
    state = read_state(StateLayout(args.state_dir.absolute()).state_file)
    api_url = args.api_url or (state.api_url if state is not None and state.phase == "running" else "")
    if not api_url:
        print(
            f"error: no running emulator in {args.state_dir} (start one, or pass --api-url)", file=sys.stderr
        )
        return 2
    try:
        config = LoadConfig(
            api_url=api_url,
            clients=args.clients,
            duration=args.duration,
            max_requests=args.max_requests,
            create_ratio=args.create_ratio,
            seed=args.seed,
        )
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_load(config, state)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(format_report(report))
    print(f"written to {args.output}")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
