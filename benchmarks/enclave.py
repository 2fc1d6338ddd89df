"""Per-field cost of the enclave's decrypt path against the bare HPKE primitive.

Measured in one run, on the same 100 P-384 fields:

* ``enclave``: :meth:`RequestHandler.handle` on the framed request body (JSON parsing,
  validation, suite and encoding checks, key load, per-field parse + open + UTF-8,
  reply building), with a key decryptor that returns the PKCS#8 key at once. The
  per-request key load (PKCS#8 parse, recipient setup) is timed separately and
  subtracted for the per-field figure; KMS is not part of this benchmark.
* ``raw``: :meth:`vault.common.hpke.Recipient.open` on pre-split ``(enc, ct)``.
* ``pyhpke``: pyhpke's recipient context + open, for reference.

Also the request rate of the handler for 1, 10 and 100-field requests (whole requests:
parsing, key load, opens, reply; KMS excluded), as fields per CPU second.

All times are CPU time of the benchmark thread. Target: enclave per field <= 1.2 x raw
per field. CEL compile and evaluation cost per
expression are reported when the CEL engine is installed.
"""

from __future__ import annotations

import json
import secrets
import statistics
import string
import threading
import time
from functools import partial
from typing import Any

import pyhpke
from cryptography.hazmat.primitives.serialization import load_der_private_key

from benchmarks import LoadMonitor, Options, best_of, describe_load, figure, samples, table, write_results
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.hpke import Recipient
from vault.common.messages import Credential
from vault.common.suites import P384_SHA384_AES256GCM
from vault.enclave.encoding import parse_field_value
from vault.enclave.handler import RequestHandler
from vault.enclave.keys import recipient_from_pkcs8

FIELD_COUNT = 100
REQUEST_SIZES = (1, 10, 100)
#: CPU time of this thread: the work is CPU-bound, and CPU time does not grow when other
#: processes compete for the cores (wall time does, by whole scheduler slices).
CLOCK = time.thread_time
TARGET_RATIO = 1.2
#: A 10-field request's fields per CPU second against the raw open rate.
REQUEST_TARGET = 0.9
#: 100 fields opened on two threads against one (wall time, two cores).
PARALLEL_TARGET = 0.6
SUITE = P384_SHA384_AES256GCM
VAULT_ID = "v_benchmark0000000000000000"
CEL_EXPRESSIONS = {
    "age": "date(dob).age()",
    "upper": "first_name.to_uppercase()",
    "ssn_hash": "sha256(ssn9)",
    "ssn_masked": "'***-**-' + ssn9.substring(5)",
}
CEL_FIELDS = {"first_name": "Bob", "dob": "1979-04-05", "ssn9": "123456789"}


class _PlaintextKeyDecryptor:
    """Returns the key at once, so that only the enclave's own work is timed."""

    def __init__(self, der: bytes) -> None:
        self._der = der

    def decrypt_private_key(
        self,
        *,
        ciphertext: bytes,
        vault_id: str,
        region: str,
        credential: Credential,
        authorizer: str | None = None,
    ) -> bytes:
        return self._der


def _random_value(rng: secrets.SystemRandom) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(8, 24)))


def _fixture() -> tuple[VaultKey, bytes, dict[str, str]]:
    decryptor = LocalKeyDecryptor()
    key = decryptor.create_vault_key(VAULT_ID, SUITE)
    der = decryptor.decrypt_private_key(
        ciphertext=key.encrypted_private_key,
        vault_id=VAULT_ID,
        region="us-east-1",
        credential=Credential.model_validate({"AccessKeyId": "a", "SecretAccessKey": "b"}),
    )
    rng = secrets.SystemRandom()
    fields = {
        f"field_{i:03d}": key.seal_field(f"field_{i:03d}", _random_value(rng)) for i in range(FIELD_COUNT)
    }
    return key, der, fields


def _hpke_rows(options: Options) -> dict[str, Any]:
    key, der, fields = _fixture()
    raw_request = json.dumps(key.request(fields).to_wire()).encode()
    handler = RequestHandler(_PlaintextKeyDecryptor(der))
    reply = handler.handle(raw_request)
    if reply.is_global_failure or reply.errors:
        raise RuntimeError(f"benchmark request failed: {reply.errors[:1]}")

    recipient = recipient_from_pkcs8(der, SUITE)
    info = VAULT_ID.encode()
    split = [(name.encode(), parse_field_value(value, SUITE)) for name, value in fields.items()]

    def raw_batch() -> None:
        for aad, sealed in split:
            recipient.open(sealed.enc, sealed.ct, info, aad)

    other = pyhpke.CipherSuite.new(
        pyhpke.KEMId.DHKEM_P384_HKDF_SHA384, pyhpke.KDFId.HKDF_SHA384, pyhpke.AEADId.AES256_GCM
    )
    other_key = pyhpke.KEMKey.from_pyca_cryptography_key(load_der_private_key(der, None))

    def pyhpke_batch() -> None:
        for aad, sealed in split:
            other.create_recipient_context(sealed.enc, other_key, info=info).open(sealed.ct, aad=aad)

    def key_load() -> Recipient:
        return recipient_from_pkcs8(der, SUITE)

    repeats = 3 if options.quick else 31
    key_load_s = best_of(repeats * 5, key_load, CLOCK)
    enclave_s, raw_s, pyhpke_s, ratios = [], [], [], []
    for index in range(repeats):
        # Paired, alternating measurements: drift (frequency scaling, other processes)
        # hits both paths of a pair alike, so the median of the pair ratios is stable
        # where separate minima are not.
        if index % 2:
            raw_t = best_of(1, raw_batch, CLOCK)
            enclave_t = best_of(1, lambda: handler.handle(raw_request), CLOCK)
        else:
            enclave_t = best_of(1, lambda: handler.handle(raw_request), CLOCK)
            raw_t = best_of(1, raw_batch, CLOCK)
        enclave_s.append(enclave_t)
        raw_s.append(raw_t)
        ratios.append((enclave_t - key_load_s) / raw_t)
        pyhpke_s.append(best_of(1, pyhpke_batch, CLOCK))
    enclave_request = min(enclave_s)
    enclave_field = (enclave_request - key_load_s) / FIELD_COUNT
    raw_field = min(raw_s) / FIELD_COUNT
    pyhpke_field = min(pyhpke_s) / FIELD_COUNT
    # Primary figure: best enclave time against best raw time (the runs least disturbed
    # by other load); the median and spread of the paired ratios show the noise.
    ratio = enclave_field / raw_field
    return {
        "fields": FIELD_COUNT,
        "suite": str(SUITE),
        "repeats": repeats,
        "enclave_request_ms": enclave_request * 1e3,
        "key_load_ms": key_load_s * 1e3,
        "enclave_per_field_us": enclave_field * 1e6,
        "raw_open_per_field_us": raw_field * 1e6,
        "pyhpke_open_per_field_us": pyhpke_field * 1e6,
        "ratio_enclave_to_raw": ratio,
        "ratio_pair_median": statistics.median(ratios),
        "ratio_pair_min": min(ratios),
        "ratio_pair_max": max(ratios),
        "ratio_pyhpke_to_raw": pyhpke_field / raw_field,
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
    }


def _request_rows(options: Options) -> dict[str, Any]:
    """Whole-request CPU cost and fields per CPU second for 1, 10 and 100-field requests."""
    key, der, fields = _fixture()
    handler = RequestHandler(_PlaintextKeyDecryptor(der))
    repeats = 3 if options.quick else 21
    results: dict[str, Any] = {}
    for size in REQUEST_SIZES:
        subset = dict(list(fields.items())[:size])
        raw_request = json.dumps(key.request(subset).to_wire()).encode()
        reply = handler.handle(raw_request)
        if reply.is_global_failure or reply.errors:
            raise RuntimeError(f"benchmark request failed: {reply.errors[:1]}")
        # Small requests are batched so that each timing spans at least ~100 opens.
        batch = max(1, 100 // size)

        def run_batch(request: bytes = raw_request, count: int = batch) -> None:
            for _ in range(count):
                handler.handle(request)

        timings = [t / batch for t in samples(repeats, run_batch, CLOCK)]
        median = statistics.median(timings)
        results[str(size)] = {
            "fields": size,
            "request_cpu_ms_p50": median * 1e3,
            "request_cpu_ms_min": min(timings) * 1e3,
            "fields_per_cpu_s": size / median,
            "requests_per_cpu_s": 1.0 / median,
        }
    return results


def _gil_rows(options: Options) -> dict[str, Any]:
    """Whether opening fields on two threads beats one: does the HPKE open release the GIL?

    Wall time of the 100 opens on one thread against the same opens split over two threads
    (best of the repeats each), and the process's CPU seconds per wall second in the
    two-thread run (near 1.0: one thread ran at a time; near 2.0: both cores worked).
    """
    _key, der, fields = _fixture()
    recipient = recipient_from_pkcs8(der, SUITE)
    info = VAULT_ID.encode()
    split = [(name.encode(), parse_field_value(value, SUITE)) for name, value in fields.items()]

    def opens(items: list[Any]) -> None:
        for aad, sealed in items:
            recipient.open(sealed.enc, sealed.ct, info, aad)

    def two_threads() -> None:
        half = len(split) // 2
        threads = [threading.Thread(target=opens, args=(part,)) for part in (split[:half], split[half:])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    repeats = 3 if options.quick else 15
    one = best_of(repeats, partial(opens, split), time.perf_counter)
    two, cpu_per_wall = float("inf"), 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        two_threads()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if wall < two:
            two, cpu_per_wall = wall, cpu / wall
    return {
        "fields": len(split),
        "one_thread_ms": one * 1e3,
        "two_threads_ms": two * 1e3,
        "ratio": two / one,
        "cpu_per_wall_two_threads": cpu_per_wall,
        "target_ratio": PARALLEL_TARGET,
    }


def _cel_rows(options: Options) -> dict[str, Any] | None:
    try:
        from vault.enclave.cel import CelEngine  # cel-python is optional: no CEL rows without it
    except ImportError:
        return None
    repeats = 5 if options.quick else 50
    results: dict[str, Any] = {}
    for name, expression in CEL_EXPRESSIONS.items():
        one = {name: expression}
        cold = []
        for _ in range(repeats):
            fresh = CelEngine()  # built outside the timing: only compile + first eval count
            cold.append(best_of(1, partial(fresh.evaluate, CEL_FIELDS, one), CLOCK))
        warm_engine = CelEngine()
        check = warm_engine.evaluate(CEL_FIELDS, one)
        warm = best_of(repeats, partial(warm_engine.evaluate, CEL_FIELDS, one), CLOCK)
        results[name] = {
            "expression": expression,
            "compile_us": max(min(cold) - warm, 0.0) * 1e6,
            "eval_us": warm * 1e6,
            "ok": not check.errors,
        }
    return results


def _figures(
    hpke: dict[str, Any], requests: dict[str, Any], cel: dict[str, Any] | None, gil: dict[str, Any]
) -> list[dict[str, Any]]:
    raw = hpke["raw_open_per_field_us"]
    rows = [
        figure(
            "enclave",
            "HPKE open per field, enclave path (P-384)",
            hpke["enclave_per_field_us"],
            "us",
            clock="cpu",
            baseline="Recipient.open (raw)",
            baseline_value=raw,
            target=f"<= {TARGET_RATIO}x raw",
            ok=bool(hpke["within_target"]),
        ),
        figure("enclave", "HPKE open per field, raw Recipient.open", raw, "us", clock="cpu"),
        figure(
            "enclave",
            "HPKE open per field, pyhpke (reference)",
            hpke["pyhpke_open_per_field_us"],
            "us",
            clock="cpu",
            baseline="Recipient.open (raw)",
            baseline_value=raw,
        ),
    ]
    for entry in requests.values():
        size = entry["fields"]
        rows.append(
            figure(
                "enclave",
                f"{size}-field request, fields per CPU second (KMS excluded)",
                entry["fields_per_cpu_s"],
                "fields/s",
                clock="cpu",
                # The raw primitive's rate is the ceiling: the ratio shows the share achieved.
                baseline="raw open rate",
                baseline_value=1e6 / raw,
                target=f">= {REQUEST_TARGET}x raw" if size == 10 else None,
                ok=entry["fields_per_cpu_s"] * raw / 1e6 >= REQUEST_TARGET if size == 10 else None,
            )
        )
    rows.append(
        figure(
            "enclave",
            f"{gil['fields']} opens on 2 threads, wall (CPU/wall {gil['cpu_per_wall_two_threads']:.2f})",
            gil["two_threads_ms"],
            "ms",
            clock="wall",
            baseline="1 thread",
            baseline_value=gil["one_thread_ms"],
            target=f"<= {PARALLEL_TARGET}x 1 thread",
            ok=gil["ratio"] <= PARALLEL_TARGET,
        )
    )
    for name, entry in (cel or {}).items():
        rows.append(figure("enclave", f"CEL compile: {name}", entry["compile_us"], "us", clock="cpu"))
        rows.append(figure("enclave", f"CEL eval: {name}", entry["eval_us"], "us", clock="cpu"))
    return rows


def run(options: Options) -> int:
    with LoadMonitor() as load:
        hpke_results = _hpke_rows(options)
        request_results = _request_rows(options)
        cel_results = _cel_rows(options)
        gil_results = _gil_rows(options)
    r = hpke_results
    rows = [
        [
            "enclave handler, key load excluded",
            f"{r['enclave_per_field_us']:.1f}",
            f"{r['ratio_enclave_to_raw']:.3f}",
        ],
        ["Recipient.open on pre-split bytes", f"{r['raw_open_per_field_us']:.1f}", "1.000"],
        [
            "pyhpke open (reference)",
            f"{r['pyhpke_open_per_field_us']:.1f}",
            f"{r['ratio_pyhpke_to_raw']:.3f}",
        ],
    ]
    print(table(["path", "per field (CPU us, best)", "x raw"], rows))
    verdict = "within" if r["within_target"] else "ABOVE"
    print(
        f"\n{r['fields']} fields, {r['suite']}: request {r['enclave_request_ms']:.2f} ms incl. key load "
        f"{r['key_load_ms']:.3f} ms (KMS excluded); enclave/raw {r['ratio_enclave_to_raw']:.3f} "
        f"(paired runs: median {r['ratio_pair_median']:.3f}, "
        f"range {r['ratio_pair_min']:.3f}..{r['ratio_pair_max']:.3f}), "
        f"{verdict} target {TARGET_RATIO}"
    )
    print()
    print(
        table(
            ["request", "CPU ms (median)", "fields / CPU s", "x raw open rate"],
            [
                [
                    f"{v['fields']} field(s)",
                    f"{v['request_cpu_ms_p50']:.2f}",
                    f"{v['fields_per_cpu_s']:,.0f}",
                    f"{v['fields_per_cpu_s'] * r['raw_open_per_field_us'] / 1e6:.2f}",
                ]
                for v in request_results.values()
            ],
        )
    )
    if cel_results is None:
        print("\nCEL: engine not installed, skipped")
    else:
        print()
        print(
            table(
                ["CEL expression", "compile (us)", "eval (us)"],
                [
                    [
                        f"{v['expression']}" + ("" if v["ok"] else " (error)"),
                        f"{v['compile_us']:.0f}",
                        f"{v['eval_us']:.0f}",
                    ]
                    for v in cel_results.values()
                ],
            )
        )
    g = gil_results
    print(
        f"\n{g['fields']} opens: 1 thread {g['one_thread_ms']:.1f} ms, "
        f"2 threads {g['two_threads_ms']:.1f} ms "
        f"({g['ratio']:.2f}x, target <= {PARALLEL_TARGET}x; process CPU per wall second with 2 threads "
        f"{g['cpu_per_wall_two_threads']:.2f}: near 1 means the open holds the GIL)"
    )
    load_result = load.result()
    print(f"\n{describe_load(load_result)}")
    path = write_results(
        options,
        "enclave",
        {
            "hpke": hpke_results,
            "requests": request_results,
            "cel": cel_results,
            "parallel": gil_results,
            "load": load_result,
            "figures": _figures(hpke_results, request_results, cel_results, gil_results),
        },
    )
    print(f"results: {path}")
    return 0
