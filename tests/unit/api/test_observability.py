"""Metrics, tracing without X-Ray, and client configuration (spec 1.5, 1.10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unit.api.harness import ApiHarness
from vault.api import clients
from vault.api.observability import tracer

TESTS_DIR = Path(__file__).resolve().parents[2]


def _metrics(output: str) -> list[str]:
    names: list[str] = []
    for line in output.splitlines():
        if line.startswith('{"_aws"'):
            document = json.loads(line)
            (directive,) = document["_aws"]["CloudWatchMetrics"]
            assert directive["Namespace"] == "NitroVault"
            names.extend(metric["Name"] for metric in directive["Metrics"])
    return names


def test_one_metric_per_change(api: ApiHarness, capsys: pytest.CaptureFixture[str]) -> None:
    vault_id = api.create({"first_name": "Ann"})
    api.call("PATCH", f"/vaults/{vault_id}", body={"city": "Paris"})
    api.call("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["city"], "reason": "r"})
    api.call("GET", f"/vaults/{vault_id}")
    api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True})
    api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True})
    assert _metrics(capsys.readouterr().out) == ["VaultCreate", "VaultUpdate", "VaultDecrypt", "VaultDelete"]


def test_tracer_is_off_outside_lambda() -> None:
    assert "LAMBDA_TASK_ROOT" not in os.environ
    assert tracer.disabled


_IN_LAMBDA = """
import json
from unit.api.events import LambdaContext, rest_event
from vault.api.handler import lambda_handler
from vault.api.observability import tracer
response = lambda_handler(rest_event("GET", "/nowhere"), LambdaContext())
print(json.dumps({"status": response["statusCode"], "tracing": not tracer.disabled}))
"""


@pytest.mark.parametrize(("disabled", "tracing"), [(None, True), ("true", False)])
def test_handler_runs_in_lambda_without_an_xray_daemon(disabled: str | None, tracing: bool) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("POWERTOOLS_", "AWS_", "_X_AMZN"))
    }
    env.update(
        LAMBDA_TASK_ROOT="/var/task",
        AWS_LAMBDA_FUNCTION_NAME="nitro-vault-api",
        AWS_REGION="us-east-1",
        PYTHONPATH=os.pathsep.join([str(TESTS_DIR), env.get("PYTHONPATH", "")]),
    )
    if disabled is not None:
        env["POWERTOOLS_TRACE_DISABLED"] = disabled
    result = subprocess.run(
        [sys.executable, "-c", _IN_LAMBDA], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 404, "tracing": tracing}


def test_clients_are_created_once_with_bounded_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients.dynamodb_client.cache_clear()
    clients.kms_client.cache_clear()
    try:
        dynamodb = clients.dynamodb_client("us-east-1", "http://127.0.0.1:4566")
        assert clients.dynamodb_client("us-east-1", "http://127.0.0.1:4566") is dynamodb
        assert dynamodb.meta.endpoint_url == "http://127.0.0.1:4566"
        config = dynamodb.meta.config
        assert (config.connect_timeout, config.read_timeout) == (1.0, 1.0)
        assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
        kms = clients.kms_client("us-east-1")
        assert kms.meta.config.retries == {"total_max_attempts": 2, "mode": "standard"}
        assert kms.meta.region_name == "us-east-1"
    finally:
        clients.dynamodb_client.cache_clear()
        clients.kms_client.cache_clear()
