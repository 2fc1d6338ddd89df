"""The enclave benchmark runs through the registry and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_enclave_benchmark_quick_run(tmp_path, monkeypatch, capsys):
    # ``benchmarks`` is not an installed package: import it from the checkout.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from benchmarks.__main__ import BENCHMARKS, main

    assert "enclave" in BENCHMARKS
    assert main(["enclave", "--quick", "--out-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "enclave.json").read_text())
    hpke = results["hpke"]
    assert hpke["fields"] == 100 and hpke["suite"] == "P384_SHA384_AES256GCM"
    for key in ("enclave_per_field_us", "raw_open_per_field_us", "pyhpke_open_per_field_us", "key_load_ms"):
        assert hpke[key] > 0
    expected_ratio = hpke["enclave_per_field_us"] / hpke["raw_open_per_field_us"]
    assert hpke["ratio_enclave_to_raw"] == pytest.approx(expected_ratio)
    assert set(results["cel"]) == {"age", "upper", "ssn_hash", "ssn_masked"}
    assert all(entry["ok"] for entry in results["cel"].values())
    out = capsys.readouterr().out
    assert "Recipient.open on pre-split bytes" in out and "enclave.json" in out


def test_unknown_benchmark_is_refused(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from benchmarks.__main__ import main

    try:
        main(["nope"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("an unknown benchmark must be refused")
    assert "unknown benchmark" in capsys.readouterr().err
