"""Lambda concurrency: execution environments started on demand, reused warm, waited for or
throttled beyond their limit; and a backend that stays as consistent as DynamoDB under it."""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.dynamodb.responses import DynamoHandler

from emulator.aws.backends import AwsBackend, BackendConfig, start_backend
from emulator.aws.backends.moto_isolation import table_names
from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy
from emulator.aws.gateway.event import HttpRequest
from emulator.aws.gateway.runtime import (
    ExecutionEnvironments,
    FunctionThrottled,
    HandlerError,
    InvocationUsage,
    LambdaRuntime,
    NoFreeEnvironment,
)
from emulator.aws.gateway.server import ApiGateway, GatewayConfig, LambdaContext, parse_args
from emulator.daemon.config import EmulatorConfig
from emulator.host import bootstrap
from emulator.tools.cli import build_parser, config_from_args, main
from vault.api.store import NewVault, StoredValue, VaultStore
from vault.infra.table import create_table_kwargs

#: Bound on every wait of these tests.
WAIT = 10.0


class FakeEnvironment:
    """An execution environment in this process: counts its starts, holds invocations at a gate."""

    def __init__(self, pool_log: list[FakeEnvironment], gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.started = 0
        self.invocations = 0
        self.active = 0
        self.environment: dict[str, str] = {}
        self.last_usage: InvocationUsage | None = None
        self._pending_init = False
        #: What happened to the environments, in order, shared by all of one pool.
        self.events = STOP_EVENTS
        pool_log.append(self)

    @property
    def pid(self) -> int | None:
        return 1000 + self.started

    def start(self) -> None:
        self.started += 1
        self._pending_init = True

    def configure(self, environment: Mapping[str, str]) -> None:
        self.environment = dict(environment)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.active += 1
        try:
            assert self.active == 1, "an environment serves one invocation at a time"
            if self.gate is not None:
                assert self.gate.wait(WAIT)
            self.invocations += 1
            init, self._pending_init = (0.25 if self._pending_init else None), False
            self.last_usage = InvocationUsage(0.001, 0.001, 64, init)
            if event.get("httpMethod") == "DELETE":
                raise HandlerError("RuntimeError")
            return {"statusCode": 200, "body": json.dumps({"env": id(self)})}
        finally:
            self.active -= 1

    def release(self) -> None:
        self.events.append(("release", id(self)))

    def stop(self) -> None:
        self.events.append(("stop", id(self)))


STOP_EVENTS: list[tuple[str, int]] = []


def test_stopping_tells_every_environment_before_waiting_for_any() -> None:
    environments, created = pool(3)
    deadline = time.monotonic() + WAIT
    threads = [
        threading.Thread(target=environments.invoke, args=({}, None, deadline)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    STOP_EVENTS.clear()
    environments.stop()
    kinds = [kind for kind, _ in STOP_EVENTS]
    assert len(created) >= 1
    assert kinds == ["release"] * len(created) + ["stop"] * len(created)


def pool(
    concurrency: int, reserved: int | None = None, gate: threading.Event | None = None
) -> tuple[ExecutionEnvironments, list[FakeEnvironment]]:
    created: list[FakeEnvironment] = []
    environments = ExecutionEnvironments(
        lambda: FakeEnvironment(created, gate), concurrency=concurrency, reserved=reserved
    )
    return environments, created


def request(method: str = "GET", path: str = "/v1/vaults/x") -> HttpRequest:
    return HttpRequest(method, path, "", [("Host", "127.0.0.1:1")], b"")


def dispatch_all(gateway: ApiGateway, count: int) -> tuple[list[Any], list[threading.Thread]]:
    """``count`` requests at once, each on its own thread: their responses (in order, once
    joined) and the threads."""
    responses: list[Any] = [None] * count

    def one(index: int) -> None:
        responses[index] = gateway.dispatch(request())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return responses, threads


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def wait_for(condition: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# -- execution environments -------------------------------------------------------------


def test_environments_start_on_demand_up_to_the_limit_and_are_reused_warm() -> None:
    gate = threading.Event()
    environments, created = pool(3, gate=gate)
    environments.start()
    environments.configure({"TABLE_NAME": "t"})
    assert len(created) == 1 and created[0].started == 1
    gateway = ApiGateway(GatewayConfig(), environments)
    responses, threads = dispatch_all(gateway, 5)
    # Three run at once (one environment each); the other two wait for one of them.
    wait_for(lambda: environments.busy == 3)
    assert len(created) == 3
    assert all(env.environment == {"TABLE_NAME": "t"} for env in created)
    gate.set()
    join(threads)
    assert [r.status for r in responses] == [200] * 5
    assert len(created) == 3 and all(env.started == 1 for env in created)
    assert sum(env.invocations for env in created) == 5
    # Warm environments serve what follows: no new start.
    for _ in range(4):
        assert gateway.dispatch(request()).status == 200
    assert len(created) == 3 and environments.started == 3


def test_init_duration_is_on_the_first_report_line_of_each_environment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environments, _ = pool(1)
    environments.start()
    gateway = ApiGateway(GatewayConfig(), environments)
    with caplog.at_level(logging.INFO, logger="emulator.aws.gateway.server"):
        for method in ("GET", "GET", "DELETE"):
            gateway.dispatch(request(method))
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REPORT ")]
    assert len(reports) == 3  # a handler that raised is reported too
    fields = [
        dict(part.split(": ", 1) for part in line.removeprefix("REPORT ").split("\t")) for line in reports
    ]
    assert fields[0]["Init Duration"] == "250.00 ms"
    assert all("Init Duration" not in later for later in fields[1:])
    # Lambda's order: Init Duration after Max Memory Used.
    assert list(fields[0])[:6] == [
        "RequestId",
        "Duration",
        "Billed Duration",
        "Memory Size",
        "Max Memory Used",
        "Init Duration",
    ]


def test_beyond_the_limit_an_invocation_waits_until_its_deadline() -> None:
    gate = threading.Event()
    environments, created = pool(1, gate=gate)
    environments.start()
    gateway = ApiGateway(GatewayConfig(integration_timeout=0.3), environments)
    _, threads = dispatch_all(gateway, 1)
    wait_for(lambda: environments.busy == 1)
    began = time.monotonic()
    waited = gateway.dispatch(request())
    assert waited.status == 504
    assert json.loads(waited.body) == {"message": "Endpoint request timed out"}
    assert 0.2 < time.monotonic() - began < 2.0
    gate.set()
    join(threads)
    # The held invocation (abandoned at its own deadline) ends; the one that waited never ran.
    wait_for(lambda: environments.busy == 0)
    assert len(created) == 1 and created[0].invocations == 1


def test_no_free_environment_is_reported_at_the_deadline() -> None:
    gate = threading.Event()
    environments, _ = pool(1, gate=gate)
    environments.start()
    holder = threading.Thread(target=environments.invoke, args=({}, None, time.monotonic() + WAIT))
    holder.start()
    wait_for(lambda: environments.busy == 1)
    with pytest.raises(NoFreeEnvironment):
        environments.invoke({}, None, time.monotonic() + 0.05)
    gate.set()
    join([holder])


def test_beyond_the_reserved_concurrency_the_function_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()
    environments, created = pool(4, reserved=2, gate=gate)
    environments.start()
    gateway = ApiGateway(GatewayConfig(), environments)
    responses, threads = dispatch_all(gateway, 2)
    wait_for(lambda: environments.busy == 2)
    with caplog.at_level(logging.ERROR, logger="emulator.aws.gateway.server"):
        began = time.monotonic()
        throttled = gateway.dispatch(request())
    assert time.monotonic() - began < 1.0  # at once, no waiting
    # API Gateway's answer to an invocation Lambda refused (Lambda's 429 TooManyRequestsException).
    assert throttled.status == 500
    assert json.loads(throttled.body) == {"message": "Internal server error"}
    assert dict(throttled.headers)["x-amzn-ErrorType"] == "InternalServerErrorException"
    assert any(
        "429" in r.getMessage() and "ReservedFunctionConcurrentInvocationLimitExceeded" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(FunctionThrottled):
        environments.invoke({}, None, time.monotonic() + WAIT)
    gate.set()
    join(threads)
    assert [r.status for r in responses] == [200, 200]
    assert len(created) == 2  # never more environments than reserved


@pytest.mark.parametrize(("concurrency", "reserved"), [(0, None), (2, 3), (2, 0)])
def test_impossible_concurrency_settings_are_refused(concurrency: int, reserved: int | None) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ExecutionEnvironments(lambda: FakeEnvironment([]), concurrency=concurrency, reserved=reserved)
    with pytest.raises(ValueError, match="concurrency"):
        EmulatorConfig(lambda_concurrency=concurrency, reserved_concurrency=reserved)
    argv = ["--concurrency", str(concurrency)] + (
        [] if reserved is None else ["--reserved-concurrency", str(reserved)]
    )
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_the_default_concurrency_is_the_number_of_cores() -> None:
    assert parse_args([]).concurrency == (os.cpu_count() or 1)
    assert EmulatorConfig().lambda_concurrency == (os.cpu_count() or 1)
    assert EmulatorConfig().reserved_concurrency is None


def test_the_cli_passes_the_concurrency_settings_on(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["up", "--lambda-concurrency", "3", "--reserved-concurrency", "2"])
    config = config_from_args(args)
    assert (config.lambda_concurrency, config.reserved_concurrency) == (3, 2)
    assert EmulatorConfig.from_json(config.to_json()) == config
    with pytest.raises(SystemExit) as refused:
        main(["up", "--state-dir", str(tmp_path), "--lambda-concurrency", "1", "--reserved-concurrency", "2"])
    assert refused.value.code == 2
    assert not (tmp_path / "state.json").exists()


HANDLER = """
import os, time

def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    return {"statusCode": 200, "body": str(os.getpid()) + " " + os.environ.get("TABLE_NAME", "")}
"""


def test_real_processes_serve_concurrent_invocations_and_report_their_cold_start(tmp_path: Path) -> None:
    (tmp_path / "fn.py").write_text(textwrap.dedent(HANDLER))
    command = [sys.executable, "-I", "-S", "-u", bootstrap.__file__, "--tier", "api"]
    command += ["--path", str(tmp_path), "--entry", "fn:handler", "--"]
    environments = ExecutionEnvironments(
        lambda: LambdaRuntime(command, {"PATH": os.environ.get("PATH", "")}), concurrency=2
    )
    environments.start()
    try:
        environments.configure({"TABLE_NAME": "t"})
        config = GatewayConfig()
        results: list[Any] = [None, None]

        def invoke(index: int) -> None:
            context = LambdaContext(config, f"req-{index}", time.monotonic() + WAIT)
            results[index] = environments.invoke({"sleep": 0.5}, context, context.deadline)

        threads = [threading.Thread(target=invoke, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        join(threads)
        bodies = [invocation.result["body"].split() for invocation in results]
        # Two processes at once, each configured with the function's environment.
        assert len({pid for pid, _ in bodies}) == 2 and all(table == "t" for _, table in bodies)
        assert sorted(environments.pids()) == sorted(int(pid) for pid, _ in bodies)
        # The second environment started for its first invocation: its cold start is on it.
        inits = [invocation.usage.init_seconds for invocation in results]
        assert all(init is not None and init > 0 for init in inits)
        context = LambdaContext(config, "req-2", time.monotonic() + WAIT)
        again = environments.invoke({}, context, context.deadline)
        assert again.error is None and again.usage is not None and again.usage.init_seconds is None
        assert environments.started == 2
    finally:
        environments.stop()
    assert environments.pids() == []


# -- consistency of the moto backend under concurrent calls ------------------------------

TABLE = "vault-concurrency"
FIELDS = [f"field_{index:02d}" for index in range(24)]
WRITERS, WRITES_EACH, READERS, READS_EACH = 3, 15, 3, 40


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[AwsBackend]:
    with start_backend(BackendConfig(kind="moto", state_dir=tmp_path)) as started:
        yield started


def test_request_table_names_cover_single_transactional_and_batch_calls() -> None:
    assert table_names({"TableName": "a", "Key": {}}) == {"a"}
    assert table_names(
        {"TransactItems": [{"Update": {"TableName": "b"}}, {"Put": {"TableName": "a"}}, "junk"]}
    ) == {"a", "b"}
    assert table_names({"RequestItems": {"c": {}, "d": {}}}) == {"c", "d"}
    assert table_names(None) == set() and table_names({"TableName": 3}) == set()
    # What the patch wraps: moto's handler method, called without arguments.
    assert list(inspect.signature(inspect.unwrap(DynamoHandler.call_action)).parameters) == ["self"]


def test_every_concurrent_read_sees_one_whole_write(backend: AwsBackend) -> None:
    """PATCH-like transactions and decrypt-like reads at once, through the DynamoDB proxy:
    every read returns all fields as one transaction wrote them."""
    proxy = DynamoDbFaultProxy(backend.upstream("dynamodb"), region="us-east-1", credentials=("test", "test"))
    proxy.start()
    try:

        def client() -> Any:
            return boto3.client(
                "dynamodb",
                endpoint_url=proxy.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(retries={"max_attempts": 1}, max_pool_connections=4),
            )

        client().create_table(**create_table_kwargs(TABLE))
        store = VaultStore(client(), TABLE)
        vault = NewVault(
            vault_id="v_concurrency",
            suite_id=b"\x00\x10\x00\x01\x00\x01",
            public_key=b"p" * 32,
            encrypted_private_key=b"k" * 48,
            encoding_version=2,
            created_micros=1,
            fields={name: b"state-0" for name in FIELDS},
        )
        first = store.transaction()
        first.put_vault(vault)
        store.commit(first)
        written: set[StoredValue] = {b"state-0"}
        seen: list[set[StoredValue]] = []
        failures: list[BaseException] = []
        start = threading.Barrier(WRITERS + READERS, timeout=WAIT)

        def writer(index: int) -> None:
            own = VaultStore(client(), TABLE)
            start.wait()
            for round_ in range(WRITES_EACH):
                state = f"state-{index}-{round_}".encode()
                written.add(state)
                transaction = own.transaction()
                transaction.update_vault(
                    vault.vault_id, modified_micros=2 + round_, fields={name: state for name in FIELDS}
                )
                own.commit(transaction)

        def reader() -> None:
            own = VaultStore(client(), TABLE)
            start.wait()
            for _ in range(READS_EACH):
                record = own.get_vault(vault.vault_id, FIELDS)
                assert record is not None
                seen.append({record.fields[name] for name in FIELDS})

        def guarded(target: Any, *args: Any) -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported by the test below
                failures.append(exc)

        threads = [threading.Thread(target=guarded, args=(writer, i)) for i in range(WRITERS)]
        threads += [threading.Thread(target=guarded, args=(reader,)) for _ in range(READERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()
        assert not failures, failures[0]
        assert len(seen) == READERS * READS_EACH
        torn = [values for values in seen if len(values) != 1]
        assert not torn, f"{len(torn)} of {len(seen)} reads mixed writes"
        assert all(values <= written for values in seen)
    finally:
        proxy.stop()
