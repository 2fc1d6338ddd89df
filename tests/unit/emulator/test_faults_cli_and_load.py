"""``vault-emulator fault`` and ``python -m benchmarks.load`` without an emulator (stand-in API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import benchmarks
from benchmarks import load
from emulator.daemon.config import StateLayout
from emulator.faults import CATALOGUE, FaultController, FaultError, describe
from emulator.tools.cli import build_parser, main


def test_fault_list_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fault", "list"]) == 0
    out = capsys.readouterr().out
    for name, fault in CATALOGUE.items():
        assert name in out
        assert describe(fault.spec).splitlines()[1] in out


def test_fault_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["fault", "kms-latency", "on", "ms=300", "operation=Decrypt"])
    assert (args.name, args.switch, args.params) == ("kms-latency", "on", ["ms=300", "operation=Decrypt"])
    assert main(["fault", "kms-latency", "--state-dir", str(tmp_path)]) == 2
    # No daemon answers in an empty state dir.
    assert main(["fault", "kms-latency", "on", "ms=1", "--state-dir", str(tmp_path)]) == 3
    assert "not answering" in capsys.readouterr().err


def test_controller_refuses_unknown_faults_before_asking_the_daemon(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="unknown fault"):
        FaultController(StateLayout(tmp_path)).enable("meteor-strike")


# -- load ------------------------------------------------------------------------------------


class StandInApi:
    """Answers creates and decrypts like the vault API (or fails decrypts with ``fail_status``)."""

    def __init__(self, fail_status: int | None = None) -> None:
        self.fail_status = fail_status
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/vaults":
                    self._send(200, {"id": "v_standin"})
                elif api.fail_status is not None:
                    self._send(api.fail_status, {"statusCode": api.fail_status, "code": "EnclaveUnavailable"})
                else:
                    names = [*request["fields"], *request.get("expressions", {})]
                    self._send(200, {"data": dict.fromkeys(names, "x"), "errors": []})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[StandInApi]:
    server = StandInApi()
    yield server
    server.close()


def test_load_report_is_complete_and_bounded(api: StandInApi, tmp_path: Path) -> None:
    output = tmp_path / "out" / "load.json"
    argv = ["--api-url", api.url, "--clients", "3", "--duration", "1", "--max-requests", "40"]
    assert load.main([*argv, "--state-dir", str(tmp_path), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["requests"] == report["completed"] == 40 and report["errors"] == 0
    assert set(report["operations"]) == {"create", "decrypt"}
    assert report["operations"]["create"]["count"] >= 3  # every client creates before it decrypts
    for op in report["operations"].values():
        assert op["p50_ms"] <= op["p90_ms"] <= op["p99_ms"] <= op["max_ms"]
    assert report["memory"]["rss_kib_before"] is None  # no emulator state in tmp_path
    assert report["unfinished_clients"] == 0


def test_load_counts_errors_and_exits_1(tmp_path: Path) -> None:
    failing = StandInApi(fail_status=503)
    try:
        config = load.LoadConfig(api_url=failing.url, clients=2, duration=0.5, max_requests=20)
        report = load.run_load(config)
    finally:
        failing.close()
    assert report["errors"] == report["operations"]["decrypt"]["errors"] > 0
    assert report["error_samples"][0] == "decrypt: 503 EnclaveUnavailable"


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:7450/v1", "https://abc.execute-api.us-east-1.amazonaws.com/v1", "http://example.com"],
)
def test_load_refuses_anything_but_loopback(url: str) -> None:
    with pytest.raises(load.LoadError, match="loopback"):
        load.LoadConfig(api_url=url)


@pytest.mark.parametrize(
    "bad", [{"clients": 0}, {"clients": 65}, {"duration": 0}, {"duration": 601}, {"max_requests": 0}]
)
def test_load_is_bounded(bad: dict[str, Any]) -> None:
    with pytest.raises(load.LoadError):
        load.LoadConfig(api_url="http://127.0.0.1:1/v1", **bad)


def test_load_summary_uses_the_benchmarks_percentile() -> None:
    values = [v / 1000 for v in range(1, 101)]
    summary = load.summary(values, errors=0, seconds=1.0)
    # Linear interpolation (as the benchmarks): p50 of 1..100 ms is 50.5, p99 is 99.01.
    assert (summary["p50_ms"], summary["p99_ms"]) == (50.5, 99.01)
    assert summary["percentile_method"] == benchmarks.PERCENTILE_METHOD
    assert load.summary([], errors=0, seconds=1.0)["p50_ms"] == 0.0
