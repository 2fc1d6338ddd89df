"""Batch decrypt against single decrypts, per vault, on the same emulator in the same run.

``N`` vaults (the end-to-end benchmark's 10-field vault, its three CEL expressions) are
decrypted two ways, alternately, ``rounds`` times: ``N`` single ``POST /vaults/{id}/decrypt``
one after another (one keep-alive client), then one ``POST /vaults/decrypt`` with all
``N``. Every answer is checked. For each way: wall seconds, and the CPU seconds every
emulator process and the client spent (from ``/proc``), divided by ``N``: the per-vault
cost. The figure is the median per-vault cost of the batch over that of the singles, with
the target ``<= 0.6``.

The batch keeps what must stay per vault (its audit record, its signed authorization,
its KMS key release in the enclave, its fields' HPKE opens) and shares the rest: one
gateway request and Lambda invocation, one ``BatchGetItem``, one audit transaction before
and one after, one parent request, one vsock exchange, one IMDS credential lookup.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import requests

from benchmarks import (
    LoadMonitor,
    Options,
    describe_load,
    figure,
    format_value,
    table,
    write_results,
)
from benchmarks.e2e import (
    CLIENT_TIMEOUT,
    DECRYPT_FIELDS,
    EXPRESSIONS,
    REASON,
    VAULT_FIELDS,
    decrypt_once,
    decrypt_request_body,
    decrypt_url,
    expected_decryption,
)
from benchmarks.emulator_run import Started, measure_each, running_emulator
from benchmarks.load import require_loopback
from benchmarks.procs import cpu_delta, cpu_snapshot
from vault.common.messages import MAX_BATCH

GROUP = "batch decrypt"
TARGET_RATIO = 0.6


def _batch_body(vault_ids: list[str]) -> bytes:
    vaults = [
        {"id": vault_id, "fields": DECRYPT_FIELDS, "expressions": EXPRESSIONS} for vault_id in vault_ids
    ]
    return json.dumps({"reason": REASON, "vaults": vaults}).encode()


def _batch_once(session: requests.Session, url: str, body: bytes, vault_ids: list[str]) -> str | None:
    """One batch; ``None`` when every vault's answer is right, else what was wrong."""
    try:
        response = session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=CLIENT_TIMEOUT
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    expected = expected_decryption()
    results = response.json().get("results", [])
    if [result.get("id") for result in results] != vault_ids:
        return "wrong ids"
    for result in results:
        if result.get("errors") or result.get("data") != expected:
            return f"wrong answer: {str(result.get('error'))[:200]}"
    return None


def _measured(started: Started, call: Any) -> tuple[float, dict[str, float], str | None]:
    """Wall seconds of ``call()``, and the CPU seconds of each emulator process and this client."""
    processes = started.processes()
    before = cpu_snapshot(processes)
    own = time.process_time()
    began = time.perf_counter()
    problem = call()
    wall = time.perf_counter() - began
    own = time.process_time() - own
    cpu = {**cpu_delta(before, cpu_snapshot(processes)), "benchmark client": own}
    return wall, cpu, problem


def measure_backend(backend: str, options: Options, count: int, rounds: int) -> dict[str, Any]:
    with running_emulator(backend) as started:
        require_loopback(started.state.api_url)
        api = started.state.api_url
        with requests.Session() as session:
            session.trust_env = False
            vault_ids = []
            for _ in range(count):
                created = session.post(f"{api}/vaults", json=VAULT_FIELDS, timeout=CLIENT_TIMEOUT)
                created.raise_for_status()
                vault_ids.append(str(created.json()["id"]))
            single_body, expected = decrypt_request_body(), expected_decryption()
            batch_url, batch_body = f"{api}/vaults/decrypt", _batch_body(vault_ids)

            def singles() -> str | None:
                for vault_id in vault_ids:
                    problem = decrypt_once(session, decrypt_url(started, vault_id), single_body, expected)
                    if problem is not None:
                        return problem
                return None

            def batch() -> str | None:
                return _batch_once(session, batch_url, batch_body, vault_ids)

            # Warm-ups: the Lambda environment, the enclave's KMS client and recipient key.
            for warm in (singles, batch):
                problem = warm()
                if problem is not None:
                    raise RuntimeError(f"warm-up failed: {problem}")
            runs: dict[str, list[tuple[float, float]]] = {"single": [], "batch": []}
            by_process: dict[str, list[dict[str, float]]] = {"single": [], "batch": []}
            errors: list[str] = []
            with LoadMonitor() as load:
                for _ in range(rounds):
                    for name, call in (("single", singles), ("batch", batch)):
                        wall, cpu, problem = _measured(started, call)
                        runs[name].append((wall / count, sum(cpu.values()) / count))
                        by_process[name].append({label: seconds / count for label, seconds in cpu.items()})
                        if problem is not None:
                            errors.append(f"{name}: {problem}")
    per_vault: dict[str, dict[str, Any]] = {
        name: {
            "wall_ms": [wall * 1e3 for wall, _ in values],
            "cpu_ms": [cpu * 1e3 for _, cpu in values],
            "wall_ms_median": statistics.median(wall * 1e3 for wall, _ in values),
            "cpu_ms_median": statistics.median(cpu * 1e3 for _, cpu in values),
            "cpu_ms_median_by_process": {
                label: statistics.median(run[label] * 1e3 for run in by_process[name])
                for label in by_process[name][0]
            },
        }
        for name, values in runs.items()
    }
    return {
        "backend": backend,
        "vaults": count,
        "rounds": rounds,
        "errors": errors,
        "per_vault": per_vault,
        "ratio_wall": float(per_vault["batch"]["wall_ms_median"])
        / float(per_vault["single"]["wall_ms_median"]),
        "ratio_cpu": float(per_vault["batch"]["cpu_ms_median"]) / float(per_vault["single"]["cpu_ms_median"]),
        "load": load.result(),
    }


def _figures(backends: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend, result in backends.items():
        if "per_vault" not in result:
            continue
        single, batched = result["per_vault"]["single"], result["per_vault"]["batch"]
        for clock, key in (("wall", "wall_ms_median"), ("cpu", "cpu_ms_median")):
            rows.append(
                figure(
                    GROUP,
                    f"per-vault {clock}, batch of {result['vaults']}",
                    batched[key],
                    "ms",
                    clock=clock,
                    baseline=f"per-vault {clock}, single decrypts",
                    baseline_value=single[key],
                    target=f"<= {TARGET_RATIO}x single",
                    ok=batched[key] <= TARGET_RATIO * single[key],
                    backend=backend,
                )
            )
    return rows


def _print_backend(result: dict[str, Any]) -> None:
    single, batched = result["per_vault"]["single"], result["per_vault"]["batch"]
    print(
        f"[{result['backend']}] {result['vaults']} vaults, {result['rounds']} round(s), per vault (median):"
    )
    print(
        table(
            ["", "wall ms", "CPU ms"],
            [
                [
                    "single decrypts",
                    format_value(single["wall_ms_median"]),
                    format_value(single["cpu_ms_median"]),
                ],
                [
                    f"batch of {result['vaults']}",
                    format_value(batched["wall_ms_median"]),
                    format_value(batched["cpu_ms_median"]),
                ],
                [
                    f"ratio (target <= {TARGET_RATIO})",
                    f"{result['ratio_wall']:.2f}",
                    f"{result['ratio_cpu']:.2f}",
                ],
            ],
        )
    )
    if result["errors"]:
        print(f"errors: {result['errors'][:3]}")


def run(options: Options) -> int:
    count = MAX_BATCH
    rounds = options.repeats if options.repeats is not None else options.scaled(5, 1)

    def report(result: dict[str, Any]) -> None:
        _print_backend(result)
        print()

    with LoadMonitor() as load:
        backends, failed = measure_each(
            options.selected_backends,
            lambda backend: measure_backend(backend, options, count, rounds),
            report,
        )
    # A measured backend whose requests failed fails the run too.
    with_errors = any(result.get("errors") for result in backends.values())
    status = 1 if failed or with_errors else 0
    print(describe_load(load.result()))
    path = write_results(
        options,
        "batch",
        {"vaults": count, "target_ratio": TARGET_RATIO, "backends": backends, "figures": _figures(backends)},
    )
    print(f"results: {path}")
    return status
