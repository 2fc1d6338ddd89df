"""Every benchmark runs in a tiny configuration and writes well-formed results.

Not performance assertions: only that each benchmark runs through ``python -m
benchmarks``, that its numbers are there and finite, and that ratios are what they say.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
FIGURE_KEYS = {
    "group",
    "name",
    "value",
    "unit",
    "clock",
    "baseline",
    "baseline_value",
    "ratio",
    "target",
    "ok",
    "backend",
}


@pytest.fixture(autouse=True)
def _checkout_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # ``benchmarks`` is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    yield
    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        del sys.modules[name]


def _main(args: list[str]) -> int:
    from benchmarks.__main__ import main

    return main(args)


def _load(path: Path) -> dict[str, Any]:
    assert path.exists(), f"{path} was not written"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _check_figures(figures: list[dict[str, Any]]) -> None:
    assert figures, "no figures"
    for entry in figures:
        assert set(entry) == FIGURE_KEYS, entry
        assert isinstance(entry["value"], float | int) and math.isfinite(entry["value"]), entry
        assert entry["unit"] and entry["name"] and entry["group"]
        if entry["baseline"] is not None:
            assert entry["baseline_value"] > 0
            assert entry["ratio"] == pytest.approx(entry["value"] / entry["baseline_value"])
        if entry["target"] is not None:
            assert isinstance(entry["ok"], bool)


def _check_results(out: Path, names: set[str]) -> dict[str, Any]:
    results = _load(out / "results.json")
    assert set(results["benchmarks"]) == names
    assert results["cpus"] >= 1 and "machine_busy_pct" in results["load"]
    _check_figures(results["figures"])
    return results


def _check_distribution(entry: dict[str, Any]) -> None:
    assert entry["n"] >= 1
    assert 0 < entry["min"] <= entry["p50"] <= entry["p99"] <= entry["max"]


def test_the_registry_names_every_benchmark() -> None:
    from benchmarks.__main__ import BENCHMARKS

    assert set(BENCHMARKS) >= {"enclave", "key_release", "e2e", "startup", "authorization", "batch"}


def test_authorization_quick(tmp_path: Path) -> None:
    assert _main(["authorization", "--quick", "--out-dir", str(tmp_path), "--no-chart"]) == 0
    document = _load(tmp_path / "authorization.json")
    assert document["after_cpu_ms_p50"] > document["before_cpu_ms_p50"] > 0
    assert document["authorization_cpu_ms"] == pytest.approx(
        document["after_cpu_ms_p50"] - document["before_cpu_ms_p50"]
    )
    _check_figures(document["figures"])
    _check_results(tmp_path, {"authorization"})


def test_enclave_quick(tmp_path: Path) -> None:
    assert _main(["enclave", "--quick", "--out-dir", str(tmp_path), "--no-chart"]) == 0
    document = _load(tmp_path / "enclave.json")
    assert document["hpke"]["fields"] == 100
    assert set(document["requests"]) == {"1", "10", "100"}
    assert all(entry["fields_per_cpu_s"] > 0 for entry in document["requests"].values())
    parallel = document["parallel"]
    assert parallel["fields"] == 100 and parallel["one_thread_ms"] > 0 and parallel["two_threads_ms"] > 0
    assert parallel["ratio"] == pytest.approx(parallel["two_threads_ms"] / parallel["one_thread_ms"])
    _check_figures(document["figures"])
    _check_results(tmp_path, {"enclave"})


def test_key_release_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["key_release", "--quick", "--out-dir", str(tmp_path), "--no-chart"]) == 0
    document = _load(tmp_path / "key_release.json")
    for stage in (
        "rsa_keygen",
        "attestation",
        "moto_decrypt_direct",
        "front_round_trip",
        "cms_unwrap",
        "raw_rsa_oaep_aes_cbc",
        "release_reused_key",
        "release_fresh_key",
    ):
        _check_distribution(document[stage])
    assert document["reuse_bounds"] == {"max_age_s": 60.0, "max_uses": 100}
    _check_results(tmp_path, {"key_release"})
    assert "whole release, fresh key per request" in capsys.readouterr().out


def test_emulator_benchmarks_tiny_on_moto(tmp_path: Path) -> None:
    status = _main(
        [
            "e2e",
            "startup",
            "--quick",
            "--backends",
            "moto",
            "--clients",
            "1,2",
            "--requests",
            "2",
            "--repeats",
            "1",
            "--out-dir",
            str(tmp_path),
        ]
    )
    e2e = _load(tmp_path / "e2e.json")["backends"]["moto"]
    if "skipped" in e2e:
        pytest.skip(f"the emulator cannot run here: {e2e['skipped']}")
    assert status == 0, e2e.get("error")
    assert [level["clients"] for level in e2e["levels"]] == [1, 2]
    for level in e2e["levels"]:
        assert level["errors"] == 0 and level["requests"] >= 2
        assert level["throughput_rps"] > 0
        _check_distribution(level["latency_ms"])
        assert level["cpu_ms_per_request"]["benchmark client"] >= 0
        # One Lambda REPORT line per decrypt of the level (warm-ups excluded).
        for report in ("duration", "cpu"):
            _check_distribution(level["lambda_reports_ms"][report])
            assert level["lambda_reports_ms"][report]["n"] == level["requests"]
    _check_distribution(e2e["round_trips_ms"]["gateway_only"])
    _check_distribution(e2e["stages_ms"]["parent_decrypt"])
    assert e2e["memory_after_load"]["rss_mib"] > 0
    startup = _load(tmp_path / "startup.json")["backends"]["moto"]
    assert startup["up_s_p50"] > 0 and startup["rss_mib_p50"] > 0
    assert startup["runs"][0]["memory"]["processes"] >= 3
    assert startup["plugin_fixed_s_p50"] > startup["up_s_p50"]
    assert startup["clear_ms_p50"] > 0
    results = _check_results(tmp_path, {"e2e", "startup"})
    assert any(f["name"] == "empty gateway round trip (p50)" for f in results["figures"])
    chart = tmp_path / "bench.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args",
    [["--clients", "0"], ["--clients", "x"], ["--backends", "nope"], ["--requests", "0"], ["nope"]],
)
def test_bad_options_are_refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _main(args)
    assert exited.value.code == 2
    assert capsys.readouterr().err


def test_percentiles_and_distributions() -> None:
    from benchmarks import distribution, percentile

    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    assert math.isnan(percentile([], 50))
    summary = distribution([0.001, 0.002, 0.003], scale=1e3)
    assert summary["n"] == 3 and summary["p50"] == pytest.approx(2.0) and summary["max"] == pytest.approx(3.0)
    assert distribution([]) == {"n": 0}


def test_process_tree_and_memory_of_this_process() -> None:
    import os

    from benchmarks.procs import cpu_seconds, memory, with_descendants

    pids = with_descendants([os.getpid()])
    assert pids[0] == os.getpid()
    usage = memory({"me": [os.getpid()]})
    assert usage["rss_mib"] > 0 and usage["processes"] == 1
    assert cpu_seconds(os.getpid()) > 0
