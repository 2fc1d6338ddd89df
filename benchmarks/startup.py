"""Cold ``up`` of the emulator per backend, and its resident memory once it is up.

Each start is cold: a new state directory (new test PKI, image assembly and
measurement, table and key), nothing of a previous run left running. Software that
the emulator installs into the shared cache on a machine's very first run (LocalStack,
DynamoDB Local) is not part of it; ``up`` reuses that cache. Reported per backend:
``lifecycle.up`` wall time (median of the repeats, and its range), the CPU seconds the
emulator's processes had used by then, the components' own start times, ``down`` time,
and memory: the sum of RSS of every emulator process (its state file's pids and all
their descendants) and the sum of PSS (shared pages divided among their users).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks import LoadMonitor, Options, describe_load, figure, format_value, table, write_results
from benchmarks.emulator_run import measure_each, running_emulator
from benchmarks.procs import memory
from emulator.tools.client import VaultClient
from emulator.tools.isolation import clear_vault_data

GROUP = "emulator"
#: The pytest plugin's fixed cost (``up`` + ``down``, what ``vault_emulator`` adds to a session).
PLUGIN_FIXED_TARGET_S = 3.0
#: What the ``vault_clean`` fixture may cost per test.
ISOLATION_TARGET_MS = 50.0
#: Vaults written before a timed clear (each with its audit record).
ISOLATION_VAULTS = 10


def _timed_clear(state_facts: dict[str, Any], api_url: str) -> float:
    """Seconds ``vault_clean`` takes after a test that wrote :data:`ISOLATION_VAULTS` vaults."""
    with VaultClient(api_url) as client:
        for number in range(ISOLATION_VAULTS):
            client.create({"first_name": f"Bench{number}"})
    return clear_vault_data(state_facts).seconds


def _one_start(backend: str) -> dict[str, Any]:
    with running_emulator(backend) as started:
        sample = {
            "up_s": started.up_seconds,
            "up_cpu_s": started.up_cpu_seconds,
            "daemon_startup_s": started.state.startup_seconds,
            "components_s": {c.name: c.started_seconds for c in started.state.components},
            "memory": memory(started.processes()),
            "clear_s": _timed_clear(started.state.facts, started.state.api_url),
        }
        down_began = time.perf_counter()
    sample["down_s"] = time.perf_counter() - down_began
    return sample


def measure_backend(backend: str, repeats: int) -> dict[str, Any]:
    runs = [_one_start(backend) for _ in range(repeats)]
    ups = [run["up_s"] for run in runs]
    rss = [run["memory"]["rss_mib"] for run in runs]
    return {
        "backend": backend,
        "repeats": repeats,
        "up_s_p50": statistics.median(ups),
        "up_s_min": min(ups),
        "up_s_max": max(ups),
        "up_cpu_s_p50": statistics.median(run["up_cpu_s"] for run in runs),
        "down_s_p50": statistics.median(run["down_s"] for run in runs),
        "plugin_fixed_s_p50": statistics.median(run["up_s"] + run["down_s"] for run in runs),
        "clear_ms_p50": statistics.median(run["clear_s"] * 1000 for run in runs),
        "rss_mib_p50": statistics.median(rss),
        "pss_mib_p50": statistics.median(run["memory"]["pss_mib"] for run in runs),
        "runs": runs,
    }


def _figures(backends: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for backend, result in backends.items():
        if "up_s_p50" not in result:
            continue
        rows += [
            figure(GROUP, "cold up (p50)", result["up_s_p50"], "s", clock="wall", backend=backend),
            figure(
                GROUP,
                "cold up, CPU of emulator processes",
                result["up_cpu_s_p50"],
                "s",
                clock="cpu",
                backend=backend,
            ),
            figure(
                GROUP,
                "pytest plugin fixed cost (up + down, p50)",
                result["plugin_fixed_s_p50"],
                "s",
                clock="wall",
                backend=backend,
                target=f"<= {PLUGIN_FIXED_TARGET_S:g} s",
                ok=result["plugin_fixed_s_p50"] <= PLUGIN_FIXED_TARGET_S,
            ),
            figure(
                GROUP,
                f"vault_clean after {ISOLATION_VAULTS} vaults (p50)",
                result["clear_ms_p50"],
                "ms",
                clock="wall",
                backend=backend,
                target=f"<= {ISOLATION_TARGET_MS:g} ms",
                ok=result["clear_ms_p50"] <= ISOLATION_TARGET_MS,
            ),
            figure(
                GROUP,
                "resident memory when up (RSS sum)",
                result["rss_mib_p50"],
                "MiB",
                clock="-",
                backend=backend,
            ),
            figure(
                GROUP,
                "resident memory when up (PSS sum)",
                result["pss_mib_p50"],
                "MiB",
                clock="-",
                backend=backend,
            ),
        ]
    return rows


def run(options: Options) -> int:
    repeats = options.repeats if options.repeats is not None else options.scaled(3, 1)
    with LoadMonitor() as load:
        backends, failed = measure_each(
            options.selected_backends, lambda backend: measure_backend(backend, repeats)
        )
    status = 1 if failed else 0
    rows = []
    for backend, result in backends.items():
        if "up_s_p50" not in result:
            continue
        last = result["runs"][-1]
        slowest = max(
            ((name, seconds) for name, seconds in last["components_s"].items() if seconds is not None),
            key=lambda pair: pair[1],
            default=("-", 0.0),
        )
        rows.append(
            [
                backend,
                str(result["repeats"]),
                f"{result['up_s_p50']:.2f} ({result['up_s_min']:.2f}..{result['up_s_max']:.2f})",
                format_value(result["up_cpu_s_p50"]),
                f"{slowest[0]} {slowest[1]:.2f}",
                format_value(result["down_s_p50"]),
                f"{result['plugin_fixed_s_p50']:.2f} (≤ {PLUGIN_FIXED_TARGET_S:g})",
                f"{result['clear_ms_p50']:.1f} (≤ {ISOLATION_TARGET_MS:g})",
                format_value(result["rss_mib_p50"]),
                format_value(result["pss_mib_p50"]),
                str(last["memory"]["processes"]),
            ]
        )
    if rows:
        print(
            table(
                [
                    "backend",
                    "n",
                    "up s p50 (range)",
                    "up CPU s",
                    "slowest component s",
                    "down s",
                    "plugin up+down s",
                    "vault_clean ms",
                    "RSS MiB",
                    "PSS MiB",
                    "processes",
                ],
                rows,
            )
        )
    for backend, result in backends.items():
        if "runs" in result:
            by_component = result["runs"][-1]["memory"]["by_component"]
            split = ", ".join(
                f"{label} {value['rss_mib']:.0f}"
                for label, value in sorted(by_component.items(), key=lambda kv: -kv[1]["rss_mib"])
            )
            print(f"[{backend}] RSS MiB by process group: {split}")
    load_result = load.result()
    print(describe_load(load_result))
    path = write_results(
        options,
        "startup",
        {"repeats": repeats, "backends": backends, "load": load_result, "figures": _figures(backends)},
    )
    print(f"results: {path}")
    return status
