"""The daemon's fault switches, on stand-in components (the end-to-end tests use real ones)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy
from emulator.aws.imds import ImdsServer
from emulator.daemon.components.base import Context
from emulator.daemon.components.credentials import AwsKey
from emulator.daemon.components.enclave import enclave_program
from emulator.daemon.components.imds import ImdsComponent
from emulator.daemon.components.parent import ParentComponent
from emulator.daemon.config import EmulatorConfig
from emulator.faults.catalogue import CATALOGUE, FaultError, FaultServices
from emulator.faults.hooks import FaultHooks, Injected
from emulator.faults.injector import FaultInjector


class Host:
    """The parts of the supervisor the injector uses."""

    def __init__(self, tmp_path: Path) -> None:
        config = EmulatorConfig(state_dir=tmp_path)
        self.context = Context(config, config.layout)
        self.relaunched = 0
        self.kms_hooks = FaultHooks()
        self.imds = ImdsServer()
        self.proxy = DynamoDbFaultProxy("http://127.0.0.1:9", region="us-east-1", credentials=("a", "b"))
        self.parent: ParentComponent | None = None

    def services(self) -> FaultServices:
        return FaultServices(
            kms_hooks=self.kms_hooks, imds=self.imds, dynamodb_proxy=self.proxy, parent=self.parent
        )

    def relaunch_enclave(self, overrides: dict[str, str] | None) -> dict[str, Any]:
        self.relaunched += 1
        return {}

    def publish(self, live: bool = False) -> None:
        pass


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


@pytest.fixture
def injector(host: Host) -> FaultInjector:
    return FaultInjector(host)


def enable(injector: FaultInjector, name: str, **params: Any) -> dict[str, Any]:
    return injector.handle({"action": "enable", "name": name, "params": params})


def test_every_catalogued_fault_carries_its_spec_and_has_a_switch(injector: FaultInjector) -> None:
    assert set(injector.faults) == set(CATALOGUE)
    for name, kind in CATALOGUE.items():
        assert kind.spec.name == name
        assert kind.spec.injection and kind.spec.answers
        assert isinstance(injector.faults[name], kind)


def test_kms_throttle_and_latency_switch_independently(injector: FaultInjector, host: Host) -> None:
    enable(injector, "kms-throttle", operation="Decrypt", count=2)
    enable(injector, "kms-latency", ms=20, operation="Decrypt")
    hooks = host.kms_hooks
    assert hooks.before("GenerateDataKeyPairWithoutPlaintext") is None  # neither applies to other operations
    began = time.monotonic()
    assert hooks.before("Decrypt") == Injected("throttle", "Decrypt")
    assert time.monotonic() - began >= 0.02
    injector.handle({"action": "disable", "name": "kms-throttle"})
    assert hooks.before("Decrypt") is None  # the throttle is gone, the latency stays
    assert hooks.state().latency == {"Decrypt": 0.02}
    assert injector.handle({"action": "list"})["active"] == {
        "kms-latency": {"ms": 20, "operation": "Decrypt"}
    }
    assert injector.clear() == ["kms-latency"]
    assert hooks.state().latency == {} and hooks.state().throttles == ()


def test_hooks_count_requests_in_flight() -> None:
    hooks = FaultHooks()
    hooks.latency(0.3, "Decrypt")
    assert not hooks.wait_in_flight("Decrypt", 0.01)
    worker = threading.Thread(target=hooks.before, args=("Decrypt",))
    worker.start()
    assert hooks.wait_in_flight("Decrypt", 2)
    worker.join()
    assert not hooks.wait_in_flight("Decrypt", 0.01)


def test_hooks_use_up_budgets_per_operation_and_clear_by_kind() -> None:
    hooks = FaultHooks()
    hooks.fail(2, 503, operation="GetItem")
    hooks.throttle(1)
    assert hooks.before("PutItem") == Injected("throttle", "PutItem")  # a throttle of any operation
    assert hooks.before("PutItem") is None
    assert hooks.before("GetItem") == Injected("failure", "GetItem", 503)
    hooks.latency(5)
    hooks.clear("latency")
    assert hooks.state().latency == {} and len(hooks.state().failures) == 1
    assert hooks.before("GetItem") == Injected("failure", "GetItem", 503)
    assert hooks.before("GetItem") is None
    for bad in (lambda: hooks.fail(0), lambda: hooks.fail(1, 200), lambda: hooks.latency(-1)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="unknown hook kinds"):
        hooks.clear("meteor")  # type: ignore[arg-type]


def test_imds_faults_restore_the_original_behaviour(injector: FaultInjector, host: Host) -> None:
    server = host.imds
    original = server.credential_lifetime
    enable(injector, "imds-expiry", lifetime=3)
    assert server.credential_lifetime == timedelta(seconds=3)
    enable(injector, "imds-outage", status=503)
    assert server.injected_failure() == 503
    enable(injector, "imds-outage", delay=0.05)  # switching again replaces the failures
    began = time.monotonic()
    assert server.injected_failure() is None and server.response_delay == 0.05
    assert time.monotonic() - began >= 0.05
    injector.clear()
    assert server.credential_lifetime == original and server.response_delay == 0
    assert server.injected_failure() is None
    assert server.count("failed") == 1 and server.count("total") == 3


def test_dynamodb_conflict_parameters(injector: FaultInjector, host: Host) -> None:
    armed = enable(injector, "dynamodb-conflict", actions="Update, Delete", count="3")["result"]
    assert armed["actions"] == ["Update", "Delete"] and armed["remaining"] == 3
    with pytest.raises(FaultError, match="mode"):
        enable(injector, "dynamodb-conflict", mode="boom")
    with pytest.raises(FaultError, match="target"):
        enable(injector, "dynamodb-conflict", target="everything")
    assert injector.handle({"action": "disable", "name": "dynamodb-conflict"})["active"] == {}
    assert host.proxy.armed() == {}


def test_slow_commit_and_conflict_are_armed_side_by_side(injector: FaultInjector, host: Host) -> None:
    enable(injector, "dynamodb-conflict", actions="Delete")
    held = enable(injector, "dynamodb-slow-commit", ms=2000)["result"]
    assert (held["mode"], held["delay_ms"]) == ("slow-commit", 2000)
    with pytest.raises(FaultError, match="has no parameter mode"):
        enable(injector, "dynamodb-slow-commit", mode="conflict")
    assert set(host.proxy.armed()) == {"write", "reply"}
    injector.handle({"action": "disable", "name": "dynamodb-conflict"})
    assert set(host.proxy.armed()) == {"reply"}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("kms-latency", {}, "ms= is required"),
        ("kms-latency", {"ms": "soon"}, "number"),
        ("kms-throttle", {"count": 0}, "within"),
        ("imds-expiry", {"lifetime": 0}, "within"),
        ("parent-down", {}, "no parent"),
        ("enclave-kill", {}, "no enclave"),
        ("parent-down", {"bogus": ""}, "has no parameter bogus"),
        ("dynamodb-conflict", {"ms": 5}, "has no parameter ms"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    injector: FaultInjector, name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(FaultError, match=message):
        enable(injector, name, **params)
    assert injector.active == {}


def test_unknown_faults_and_actions(injector: FaultInjector) -> None:
    with pytest.raises(FaultError, match="unknown fault"):
        enable(injector, "meteor-strike")
    with pytest.raises(FaultError, match="unknown fault action"):
        injector.handle({"action": "toggle", "name": "kms-latency"})
    # Switching off what is not on is harmless.
    assert injector.handle({"action": "disable", "name": "parent-freeze"})["result"] == {}


def test_the_enclave_program_is_the_leaf_running_the_module() -> None:
    # A stand-in sandbox: a wrapper whose argv names the module too, and the program below it.
    program = [sys.executable, "-c", "import time; time.sleep(30)", "-m", "vault.enclave"]
    wrapper = [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", *program]
    sandbox = subprocess.Popen(wrapper)
    try:
        deadline = time.monotonic() + 10
        victims: list[int] = []
        while time.monotonic() < deadline:
            victims = enclave_program([sandbox.pid])
            if victims != [sandbox.pid]:
                break
            time.sleep(0.05)
        assert len(victims) == 1 and victims[0] != sandbox.pid
        assert Path(f"/proc/{victims[0]}/cmdline").read_bytes().split(b"\0")[1] == b"-c"
    finally:
        sandbox.kill()
        sandbox.wait(timeout=10)


class StandInParent(ParentComponent):
    """The parent component, running ``sleep`` instead of the parent service."""

    def command(self) -> list[str]:
        return ["sleep", "30"]

    def wait_ready(self, process: Any) -> None:
        pass


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_parent_down_takes_over_from_a_freeze(injector: FaultInjector, host: Host, tmp_path: Path) -> None:
    imds = ImdsComponent(host.context, instance=AwsKey("ASIAX", "secret", "token"))
    parent = StandInParent(host.context, imds)
    parent.start()
    host.parent = parent
    try:
        frozen = enable(injector, "parent-freeze")["result"]["frozen_pid"]
        deadline = time.monotonic() + 5
        while process_state(frozen) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_state(frozen) == "T"
        began = time.monotonic()
        assert enable(injector, "parent-down")["active"] == {"parent-down": {}}
        assert time.monotonic() - began < 4  # continued, then stopped by SIGTERM (no 5 s SIGKILL wait)
        assert parent.process is None
        injector.handle({"action": "disable", "name": "parent-down"})
        assert parent.pids() and parent.pids()[0] != frozen
    finally:
        parent.stop()
