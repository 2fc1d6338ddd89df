"""Serving: binding, port conflicts, the command line, signals, JSON logs without credentials."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.aws.imds import ImdsServer
from unit.parent.fakes import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, FakeEnclave, decrypt_body
from vault.common.logs import JsonFormatter
from vault.common.transport import PARENT_CID, TransportConfig
from vault.parent import cli
from vault.parent.config import ParentConfig, parse_static_enclaves
from vault.parent.server import ParentServer, bind

SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
PROVIDED = {"AccessKeyId": ACCESS_KEY_ID, "SecretAccessKey": SECRET_ACCESS_KEY, "Token": SESSION_TOKEN}


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer(credential_provider=lambda: PROVIDED) as server:
        yield server


def test_port_zero_binds_a_real_port() -> None:
    with ParentServer(ParentConfig(port=0)) as parent:
        assert parent.port > 0
        response = httpx.get(f"{parent.url}/health", trust_env=False)
    assert response.json() == {"status": "ok"}


def test_a_port_in_use_is_detected() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
        assert cli.main(["--port", str(port), "--enclaves", "16"]) == cli.EXIT_FAILURE


def test_an_invalid_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "99999"]) == cli.EXIT_USAGE
    assert "invalid port 99999" in capsys.readouterr().err


def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(OSError, match="cannot resolve"):
        bind("no-such-host.invalid", 0)


def test_a_uds_transport_without_a_directory_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_VSOCK_TRANSPORT", "uds")
    monkeypatch.delenv("VAULT_VSOCK_UDS_DIR", raising=False)
    assert cli.main(["--port", "0", "--enclaves", "16"]) == cli.EXIT_USAGE


def test_logs_of_a_full_request_never_contain_credentials(
    uds_dir: Path, imds: ImdsServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = ParentConfig(
        port=0,
        imds_endpoint=imds.endpoint,
        static_enclaves=parse_static_enclaves("16"),
        transport=TransportConfig(kind="uds", uds_dir=uds_dir, local_cid=PARENT_CID),
    )
    formatter = JsonFormatter("parent")
    with caplog.at_level(logging.DEBUG), FakeEnclave(uds_dir) as enclave, ParentServer(config) as parent:
        response = httpx.post(f"{parent.url}/decrypt", json=decrypt_body(), trust_env=False)
        bad = httpx.post(f"{parent.url}/decrypt", json=decrypt_body(fields={"ssn9": 5}), trust_env=False)
    assert response.status_code == 200 and bad.status_code == 422
    # The enclave did receive the credentials: they were there to leak.
    assert enclave.messages[0]["credential"] == PROVIDED
    lines = [formatter.format(record) for record in caplog.records]
    assert any("credentials refreshed" in line for line in lines)
    for line in lines:
        for secret in SECRETS:
            assert secret not in line


class Process:
    """``python -m vault.parent`` with its stderr (JSON lines) collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "vault.parent", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.lines.put(line)

    def wait_for(self, message: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            record = json.loads(line)
            if record["message"] == message:
                return record  # type: ignore[no-any-return]
        raise AssertionError(f"no {message!r} log line; saw {self.seen}")

    def finish(self, timeout: float = 15) -> int:
        code = self.popen.wait(timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code


@pytest.fixture
def child_env(uds_dir: Path, imds: ImdsServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARENT_", "VAULT_VSOCK_"))}
    env.update(TransportConfig(kind="uds", uds_dir=uds_dir, local_cid=PARENT_CID).as_env())
    env["PARENT_IMDS_ENDPOINT"] = imds.endpoint
    return env


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_logs_json_and_stops_gracefully(
    uds_dir: Path, child_env: dict[str, str], sig: signal.Signals
) -> None:
    process = Process(["--port", "0", "--enclaves", "16", "--log-level", "debug"], child_env)
    try:
        started = process.wait_for("starting")
        assert started["service"] == "parent"
        assert started["static_enclaves"] == [16]
        port = process.wait_for("listening")["port"]
        with FakeEnclave(uds_dir):
            response = httpx.post(f"http://127.0.0.1:{port}/decrypt", json=decrypt_body(), trust_env=False)
        assert response.status_code == 200
        process.popen.send_signal(sig)
        assert process.finish() == 0
    finally:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait(5)
    records = [json.loads(line) for line in process.seen]
    messages = [r["message"] for r in records]
    assert "shutting down" in messages and messages[-1] == "stopped"
    assert all(r["service"] == "parent" for r in records)
    for line in process.seen:
        for secret in SECRETS:
            assert secret not in line


def test_the_command_refuses_bad_configuration_before_starting(child_env: dict[str, str]) -> None:
    child_env["PARENT_HTTP_PORT"] = "99999"
    result = subprocess.run(
        [sys.executable, "-m", "vault.parent"], env=child_env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == cli.EXIT_USAGE
    assert "invalid port 99999" in result.stderr
