"""End-to-end decrypt through the emulator's API gateway, per backend.

A 10-field vault (nine fields given, ``ssn4`` derived from ``ssn9``) is decrypted with
three CEL expressions by 1, 4 and 16 concurrent clients (each its own keep-alive HTTP
session); every answer is checked. Reported per level: p50 and p99 latency, throughput
and errors, and the CPU every emulator process spent per request (from ``/proc``).

Lower bounds measured in the same run, on the same emulator:

* ``GET /v1``: the gateway's own 403 for the stage root, no Lambda invocation -- the
  empty round trip every request pays;
* ``GET /v1/<unknown>``: through the Lambda handler to its 404.

The stage breakdown at one client explains the decrypt latency: DynamoDB ``GetItem`` and
the audit ``TransactWriteItems`` sent straight to the backend, the parent's
``POST /decrypt`` called directly with the same request the API sends (each with a fresh
authorization signed, outside the timing, with the API's key through the backend, as the
enclave refuses a replayed one), and the spans the enclave logs (whole request, KMS key
release).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import requests
from botocore.config import Config

from benchmarks import (
    LoadMonitor,
    Options,
    describe_load,
    distribution,
    figure,
    format_value,
    samples,
    table,
    write_results,
)
from benchmarks.emulator_run import Started, measure_each, running_emulator
from benchmarks.load import require_loopback
from benchmarks.procs import cpu_delta, cpu_snapshot, memory
from vault.common.authorization import SIGNING_ALGORITHM, Grant, signing_input
from vault.common.messages import DecryptRequest
from vault.infra.table import vault_key

GROUP = "end-to-end"
VAULT_FIELDS = {
    "email": "bob@example.com",
    "first_name": "Bob",
    "last_name": "Smith",
    "phone_number": "+15554443333",
    "ssn9": "123456789",
    "dob": "1979-04-05",
    "address1": "1 Main Street",
    "city": "Springfield",
    "country": "US",
}
DECRYPT_FIELDS = [*VAULT_FIELDS, "ssn4"]
EXPRESSIONS = {
    "age": "date(dob).age()",
    "upper": "first_name.to_uppercase()",
    "ssn_masked": "'***-**-' + ssn4",
}
REASON = "benchmark"
TARGET_P50_MS = 15.0
#: Per-request client timeout: longer than the gateway's 10 s integration timeout.
CLIENT_TIMEOUT = 30.0


def expected_decryption() -> dict[str, str | int]:
    """The ``data`` a correct answer to :func:`decrypt_request_body` holds today."""
    born = dt.date.fromisoformat(VAULT_FIELDS["dob"])
    today = dt.date.today()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return {
        **VAULT_FIELDS,
        "ssn4": VAULT_FIELDS["ssn9"][-4:],
        "age": age,
        "upper": VAULT_FIELDS["first_name"].upper(),
        "ssn_masked": "***-**-" + VAULT_FIELDS["ssn9"][-4:],
    }


def decrypt_once(
    session: requests.Session, url: str, body: bytes, expected: Mapping[str, str | int]
) -> str | None:
    """One decrypt; ``None`` when the answer is right, else what was wrong."""
    try:
        response = session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=CLIENT_TIMEOUT
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        answer = response.json()
    except ValueError:
        return "not JSON"
    if answer.get("errors") or answer.get("data") != expected:
        return "wrong answer"
    return None


def decrypt_url(started: Started, vault_id: str) -> str:
    """The API's decrypt URL for ``vault_id`` on the running emulator."""
    return f"{started.state.api_url}/vaults/{vault_id}/decrypt"


def decrypt_request_body() -> bytes:
    """The benchmark's decrypt request: every field and the three CEL expressions."""
    return json.dumps({"fields": DECRYPT_FIELDS, "reason": REASON, "expressions": EXPRESSIONS}).encode()


def run_level(started: Started, vault_id: str, clients: int, total: int) -> dict[str, Any]:
    """``total`` decrypts spread over ``clients`` threads, released together."""
    url, body, expected = decrypt_url(started, vault_id), decrypt_request_body(), expected_decryption()
    per_client = max(1, -(-total // clients))
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[list[str]] = [[] for _ in range(clients)]
    # Warm-ups happen before ``ready``; the counters are read between ``ready`` and ``go``.
    ready = threading.Barrier(clients + 1, timeout=120)
    go = threading.Event()

    def worker(index: int) -> None:
        with requests.Session() as session:
            session.trust_env = False
            # Opens the keep-alive connection; not counted.
            warm = decrypt_once(session, url, body, expected)
            if warm is not None:
                failures[index].append(f"warm-up: {warm}")
            ready.wait()
            go.wait(timeout=120)
            for _ in range(per_client):
                began = time.perf_counter()
                problem = decrypt_once(session, url, body, expected)
                latencies[index].append(time.perf_counter() - began)
                if problem is not None:
                    failures[index].append(problem)

    threads = [threading.Thread(target=worker, args=(i,), name=f"bench-client-{i}") for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    # After the warm-ups: they start the Lambda environments the level needs.
    processes = started.processes()
    enclave_log_start = len(started.log_lines("enclave"))
    gateway_log_start = len(started.log_lines("gateway"))
    cpu_before = cpu_snapshot(processes)
    own_cpu = time.process_time()
    with LoadMonitor() as load:
        go.set()
        began = time.perf_counter()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT * per_client + 60)
        elapsed = time.perf_counter() - began
    own_cpu = time.process_time() - own_cpu
    cpu = cpu_delta(cpu_before, cpu_snapshot(processes))
    flat = [value for per in latencies for value in per]
    errors = [problem for per in failures for problem in per]
    done = len(flat)
    cpu_per_request = {label: seconds * 1e3 / max(done, 1) for label, seconds in cpu.items()}
    cpu_per_request["benchmark client"] = own_cpu * 1e3 / max(done, 1)
    return {
        "clients": clients,
        "requests": done,
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "elapsed_s": elapsed,
        "throughput_rps": (done - len(errors)) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": distribution(flat, 1e3),
        "cpu_ms_per_request": cpu_per_request,
        "cpu_ms_per_request_total": sum(cpu_per_request.values()),
        "enclave_spans_ms": _enclave_spans(started.log_lines("enclave")[enclave_log_start:]),
        "lambda_reports_ms": _lambda_reports(started.log_lines("gateway")[gateway_log_start:]),
        "load": load.result(),
    }


def _enclave_spans(lines: list[str]) -> dict[str, Any]:
    handled: list[float] = []
    release: list[float] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "decrypt request handled":
            handled.append(float(record.get("duration_ms", 0.0)) / 1e3)
        elif record.get("message") == "kms key release":
            release.append(float(record.get("duration_ms", 0.0)) / 1e3)
    return {"request": distribution(handled, 1e3), "kms_key_release": distribution(release, 1e3)}


def _lambda_reports(lines: list[str]) -> dict[str, Any]:
    """Duration and CPU time of each Lambda invocation, from the gateway's REPORT lines."""
    durations: list[float] = []
    cpu: list[float] = []
    for line in lines:
        _, found, report = line.partition("REPORT RequestId: ")
        if not found:
            continue
        fields = dict(part.split(": ", 1) for part in report.split("\t")[1:] if ": " in part)
        try:
            durations.append(float(fields["Duration"].removesuffix(" ms")) / 1e3)
            cpu.append(float(fields["CPU Time"].removesuffix(" ms")) / 1e3)
        except (KeyError, ValueError):
            continue
    return {"duration": distribution(durations, 1e3), "cpu": distribution(cpu, 1e3)}


def _round_trips(started: Started, count: int) -> dict[str, Any]:
    """The lower bounds: the gateway's own 403, and the handler's 404."""
    base = started.state.api_url
    with requests.Session() as session:
        session.trust_env = False

        def get(path: str, status: int) -> Callable[[], None]:
            def call() -> None:
                response = session.get(base + path, timeout=CLIENT_TIMEOUT)
                if response.status_code != status:
                    raise RuntimeError(f"GET {path}: {response.status_code}, expected {status}")

            return call

        stage_root, unknown = get("", 403), get("/benchmark-unknown-route", 404)
        stage_root()
        unknown()
        return {
            "gateway_only": distribution(samples(count, stage_root), 1e3),
            "handler_404": distribution(samples(count, unknown), 1e3),
        }


def _breakdown(started: Started, vault_id: str, count: int) -> dict[str, Any]:
    """Stages of one decrypt, each called directly (wall ms)."""

    dynamodb = boto3.session.Session().client(
        "dynamodb",
        endpoint_url=started.fact("dynamodb_endpoint"),
        region_name=started.fact("region"),
        aws_access_key_id=started.fact("backend_access_key_id"),
        aws_secret_access_key=started.fact("backend_secret_access_key"),
        config=Config(retries={"total_max_attempts": 1}),
    )
    table_name = started.fact("table_name")
    key = vault_key(vault_id)

    def get_item() -> dict[str, Any]:
        item: dict[str, Any] = dynamodb.get_item(TableName=table_name, Key=key, ConsistentRead=True)["Item"]
        return item

    def audit_write() -> None:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table_name,
                        "Item": {
                            "pk": {"S": "BENCH##" + vault_id},
                            "sk": {"S": uuid.uuid4().hex},
                            "_e": {"S": "Benchmark"},
                        },
                    }
                }
            ]
        )

    item = get_item()
    request = DecryptRequest(
        vault_id=vault_id,
        region=str(started.fact("region")),
        fields={name: base64.b64encode(bytes(item[name]["B"])).decode() for name in DECRYPT_FIELDS},
        suite_id=base64.b64encode(bytes(item["_hs"]["B"])).decode(),
        encrypted_private_key=base64.b64encode(bytes(item["_sk"]["B"])).decode(),
        expressions=EXPRESSIONS,
        encoding=str(item["_v"]["N"]),
    )
    parent_url = f"{started.fact('parent_url')}/decrypt"
    expected = {k: v for k, v in expected_decryption().items() if k not in EXPRESSIONS}
    authorize = _authorizer(started, request)
    with requests.Session() as session:
        session.trust_env = False

        def parent(body: dict[str, Any]) -> None:
            response = session.post(parent_url, json=body, timeout=CLIENT_TIMEOUT)
            reply = response.json()
            if (
                response.status_code != 200
                or {k: (reply.get("fields") or {}).get(k) for k in expected} != expected
            ):
                raise RuntimeError(f"parent decrypt failed: HTTP {response.status_code}")

        def parent_samples() -> list[float]:
            timings = []
            for _ in range(count):
                body = authorize()
                began = time.perf_counter()
                parent(body)
                timings.append(time.perf_counter() - began)
            return timings

        parent(authorize())
        audit_write()
        enclave_log_start = len(started.log_lines("enclave"))
        stages = {
            "dynamodb_get_item": distribution(samples(count, get_item), 1e3),
            "dynamodb_transact_write": distribution(samples(count, audit_write), 1e3),
            "parent_decrypt": distribution(parent_samples(), 1e3),
        }
    stages["enclave"] = _enclave_spans(started.log_lines("enclave")[enclave_log_start:])
    return stages


def _authorizer(started: Started, request: DecryptRequest) -> Callable[[], dict[str, Any]]:
    """Fresh wire forms of ``request``, each authorized with the API's key (through the backend)."""
    kms = boto3.session.Session().client(
        "kms",
        endpoint_url=started.fact("backend_endpoint"),
        region_name=started.fact("region"),
        aws_access_key_id=started.fact("backend_access_key_id"),
        aws_secret_access_key=started.fact("backend_secret_access_key"),
    )
    key_arn = started.fact("authorizer_key_arn")
    public_key = bytes(kms.get_public_key(KeyId=key_arn)["PublicKey"])

    def authorized() -> dict[str, Any]:
        grant = Grant.for_request(
            vault_id=request.vault_id,
            fields=request.fields,
            expressions=request.expressions or {},
            request_id=str(uuid.uuid4()),
            issued_at=int(time.time()),
        )
        claims = grant.to_bytes()
        signature = kms.sign(
            KeyId=key_arn,
            Message=signing_input(claims),
            MessageType="RAW",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )["Signature"]
        wire = {
            "claims": base64.b64encode(claims).decode(),
            "signature": base64.b64encode(bytes(signature)).decode(),
            "public_key": base64.b64encode(public_key).decode(),
        }
        return {**request.to_wire(), "authorization": wire}

    return authorized


def measure_backend(backend: str, options: Options) -> dict[str, Any]:
    total = options.requests if options.requests is not None else options.scaled(200, 12)
    round_trips = options.scaled(100, 10)
    with running_emulator(backend) as started:
        # Never anything but an emulator on loopback.
        require_loopback(started.state.api_url)
        idle_memory = memory(started.processes())
        with requests.Session() as session:
            session.trust_env = False
            created = session.post(
                f"{started.state.api_url}/vaults", json=VAULT_FIELDS, timeout=CLIENT_TIMEOUT
            )
            created.raise_for_status()
            vault_id = str(created.json()["id"])
            body, expected = decrypt_request_body(), expected_decryption()
            warm_errors = [
                problem
                for _ in range(options.scaled(10, 2))
                if (problem := decrypt_once(session, decrypt_url(started, vault_id), body, expected))
            ]
        if warm_errors:
            raise RuntimeError(f"decrypt through the gateway fails: {warm_errors[0]}")
        result: dict[str, Any] = {
            "backend": backend,
            "up_seconds": started.up_seconds,
            "round_trips_ms": _round_trips(started, round_trips),
            # Before the load: the table is as small as during the first level.
            "stages_ms": _breakdown(started, vault_id, round_trips),
            "levels": [run_level(started, vault_id, clients, total) for clients in options.clients],
            "memory_idle": idle_memory,
            "memory_after_load": memory(started.processes()),
        }
        # Every decrypt adds an audit item: what a write costs once the load has run.
        after = _breakdown(started, vault_id, round_trips)
        result["stages_after_load_ms"] = {
            key: after[key] for key in ("dynamodb_get_item", "dynamodb_transact_write")
        }
    return result


def _figures(backends: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend, result in backends.items():
        if "levels" not in result:
            continue
        empty = result["round_trips_ms"]["gateway_only"]["p50"]
        rows.append(
            figure(GROUP, "empty gateway round trip (p50)", empty, "ms", clock="wall", backend=backend)
        )
        rows.append(
            figure(
                GROUP,
                "handler 404 round trip (p50)",
                result["round_trips_ms"]["handler_404"]["p50"],
                "ms",
                clock="wall",
                baseline="empty round trip",
                baseline_value=empty,
                backend=backend,
            )
        )
        for level in result["levels"]:
            clients = level["clients"]
            p50 = level["latency_ms"]["p50"]
            one_moto = clients == 1 and backend == "moto"
            rows.append(
                figure(
                    GROUP,
                    f"decrypt p50, {clients} client(s)",
                    p50,
                    "ms",
                    clock="wall",
                    baseline="empty round trip",
                    baseline_value=empty,
                    target=f"<= {TARGET_P50_MS:.0f} ms" if one_moto else None,
                    ok=p50 <= TARGET_P50_MS if one_moto else None,
                    backend=backend,
                )
            )
            rows.append(
                figure(
                    GROUP,
                    f"decrypt p99, {clients} client(s)",
                    level["latency_ms"]["p99"],
                    "ms",
                    clock="wall",
                    baseline="empty round trip",
                    baseline_value=empty,
                    backend=backend,
                )
            )
            rows.append(
                figure(
                    GROUP,
                    f"decrypt throughput, {clients} client(s)",
                    level["throughput_rps"],
                    "req/s",
                    clock="wall",
                    backend=backend,
                )
            )
            rows.append(
                figure(
                    GROUP,
                    f"decrypt errors, {clients} client(s)",
                    float(level["errors"]),
                    "count",
                    clock="-",
                    target="0" if clients >= 16 else None,
                    ok=level["errors"] == 0,
                    backend=backend,
                )
            )
            handler_cpu = level["lambda_reports_ms"]["cpu"].get("p50")
            if clients == 1 and handler_cpu is not None:
                rows.append(
                    figure(
                        GROUP,
                        "Lambda handler CPU per decrypt (p50), 1 client",
                        handler_cpu,
                        "ms",
                        clock="cpu",
                        backend=backend,
                    )
                )
            rows.append(
                figure(
                    GROUP,
                    f"decrypt CPU per request, all processes, {clients} client(s)",
                    level["cpu_ms_per_request_total"],
                    "ms",
                    clock="cpu",
                    backend=backend,
                )
            )
        memory_after = result["memory_after_load"]
        rows.append(
            figure(
                GROUP,
                "resident memory after load (RSS sum)",
                memory_after["rss_mib"],
                "MiB",
                clock="-",
                backend=backend,
            )
        )
    return rows


def _print_backend(result: dict[str, Any]) -> None:
    backend = result["backend"]
    trips = result["round_trips_ms"]
    empty = trips["gateway_only"]["p50"]
    print(
        f"[{backend}] empty gateway round trip p50 {empty:.2f} ms (p99 {trips['gateway_only']['p99']:.2f}); "
        f"handler 404 p50 {trips['handler_404']['p50']:.2f} ms"
    )
    rows = []
    for level in result["levels"]:
        latency = level["latency_ms"]
        rows.append(
            [
                str(level["clients"]),
                str(level["requests"]),
                str(level["errors"]),
                format_value(latency["p50"]),
                format_value(latency["p99"]),
                f"{latency['p50'] / empty:.1f}" if empty else "",
                format_value(level["throughput_rps"]),
                format_value(level["cpu_ms_per_request_total"]),
                f"{level['load']['machine_busy_pct']}",
            ]
        )
    print(
        table(
            [
                "clients",
                "requests",
                "errors",
                "p50 ms",
                "p99 ms",
                "p50/empty",
                "req/s",
                "CPU ms/req",
                "machine busy %",
            ],
            rows,
        )
    )
    first = result["levels"][0]
    split = ", ".join(
        f"{label} {value:.1f}"
        for label, value in sorted(first["cpu_ms_per_request"].items(), key=lambda kv: -kv[1])
    )
    print(f"CPU ms per request by process at {first['clients']} client(s): {split}")
    stages = result["stages_ms"]
    enclave = stages["enclave"]
    stage_rows = [
        ["client -> gateway, no Lambda (403)", format_value(trips["gateway_only"]["p50"])],
        ["client -> gateway -> handler 404", format_value(trips["handler_404"]["p50"])],
        ["DynamoDB GetItem (direct)", format_value(stages["dynamodb_get_item"]["p50"])],
        ["DynamoDB TransactWriteItems (direct)", format_value(stages["dynamodb_transact_write"]["p50"])],
        [
            "  the same after the load (bigger table)",
            format_value(result["stages_after_load_ms"]["dynamodb_transact_write"]["p50"]),
        ],
        ["parent POST /decrypt (direct)", format_value(stages["parent_decrypt"]["p50"])],
        ["  enclave request span (log)", format_value(enclave["request"].get("p50", float("nan")))],
        ["    KMS key release span (log)", format_value(enclave["kms_key_release"].get("p50", float("nan")))],
        [
            f"Lambda handler at {first['clients']} client(s), REPORT Duration",
            format_value(first["lambda_reports_ms"]["duration"].get("p50", float("nan"))),
        ],
        [
            "  of which the handler's own CPU (REPORT CPU Time)",
            format_value(first["lambda_reports_ms"]["cpu"].get("p50", float("nan"))),
        ],
        [f"end-to-end decrypt, {first['clients']} client(s)", format_value(first["latency_ms"]["p50"])],
    ]
    print(table(["stage before the load (wall ms, p50)", "ms"], stage_rows))
    mem = result["memory_after_load"]
    print(
        f"resident memory after load: RSS {mem['rss_mib']:.0f} MiB, PSS {mem['pss_mib']:.0f} MiB "
        f"in {mem['processes']} processes"
    )


def run(options: Options) -> int:

    def report(result: dict[str, Any]) -> None:
        _print_backend(result)
        print()

    with LoadMonitor() as load:
        backends, failed = measure_each(
            options.selected_backends, lambda backend: measure_backend(backend, options), report
        )
    status = 1 if failed else 0
    load_result = load.result()
    print(describe_load(load_result))
    path = write_results(
        options,
        "e2e",
        {
            "vault_fields": len(DECRYPT_FIELDS),
            "expressions": EXPRESSIONS,
            "clients": list(options.clients),
            "backends": backends,
            "load": load_result,
            "figures": _figures(backends),
        },
    )
    print(f"results: {path}")
    if any(level["errors"] for r in backends.values() for level in r.get("levels", [])):
        status = 1
    return status
