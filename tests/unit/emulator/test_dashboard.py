"""The gateway's dashboard (``/_emulator/``): its JSON endpoints, and whom it answers.

The daemon behind it is a real control socket: either the real supervisor (components built,
not started) or :class:`StandInDaemon`, which answers the same operations with the real fault
injector on stand-in services, a real decision log and a key policy from the real builder.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.aws.gateway.dashboard import (
    CSRF_HEADER,
    Dashboard,
    PcrsView,
    checked_limit,
    decision_report,
    pcr_report,
    to_json,
)
from emulator.aws.gateway.event import HttpRequest
from emulator.aws.gateway.server import ApiGateway, GatewayConfig
from emulator.aws.kms.decisions import Decision, DecisionLog
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.control import Reply, Request, serve_control
from emulator.daemon.state import ComponentState, EmulatorState, write_state
from emulator.daemon.supervisor import Supervisor
from emulator.faults.catalogue import CATALOGUE, FaultServices
from emulator.faults.hooks import FaultHooks, Injected
from emulator.faults.injector import FaultInjector
from emulator.tools.client import AuditEvent
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy, pcr3_for_role_arn

INSTANCE_ROLE = "arn:aws:iam::123456789012:role/instance"
MEASURED = EnclaveMeasurements(pcr0="a0" * 48, pcr1="b1" * 48, pcr2="c2" * 48)
PCR3 = pcr3_for_role_arn(INSTANCE_ROLE)
SECRET = "backend-secret-never-shown"
VAULT_ID = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"


def key_policy() -> dict[str, Any]:
    return build_key_policy(
        KeyPolicyParams(
            account_id="123456789012",
            instance_role_arn=INSTANCE_ROLE,
            api_role_arn="arn:aws:iam::123456789012:role/api",
            measurements=MEASURED,
            pcr3=PCR3,
        )
    )


def attested(pcr0: str = MEASURED.pcr0) -> dict[int, bytes]:
    """What the NSM returns for an enclave launched from an image measuring ``pcr0``."""
    return {
        0: bytes.fromhex(pcr0),
        1: bytes.fromhex(MEASURED.pcr1),
        2: bytes.fromhex(MEASURED.pcr2),
        3: bytes.fromhex(PCR3),
        4: bytes(48),
    }


class StandInDaemon:
    """Answers ``pcrs``, ``decisions`` and ``fault`` as the supervisor does, on stand-in services."""

    def __init__(self) -> None:
        self.kms_hooks = FaultHooks()
        self.injector = FaultInjector(self)
        self.decisions = DecisionLog()
        self.pcr0 = MEASURED.pcr0
        self.requests: list[Request] = []

    # FaultHost, for the real injector
    def services(self) -> FaultServices:
        return FaultServices(kms_hooks=self.kms_hooks)

    def relaunch_enclave(self, overrides: dict[str, str] | None) -> dict[str, Any]:
        return {}

    def publish(self, live: bool = False) -> None:
        pass

    def handle(self, request: Request) -> Reply:
        self.requests.append(request)
        op = request.get("op")
        if op == "pcrs":
            return {"ok": True, "result": to_json(pcr_report("i-enc1", attested(self.pcr0), key_policy()))}
        if op == "decisions":
            return {"ok": True, "result": to_json(decision_report(self.decisions, request["limit"]))}
        if op == "fault":
            return {"ok": True, "result": self.injector.handle(request)}
        return {"ok": False, "error": f"unknown operation {op!r}"}


@contextlib.contextmanager
def serving(layout: StateLayout, handle: Any) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_control, args=(layout.control_socket, handle, stop.is_set), daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not layout.control_socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class RecordedAudit:
    """An audit source with fixed records (the table read is covered end to end)."""

    def __init__(self, events: list[AuditEvent]) -> None:
        self.events_by_vault = {VAULT_ID: events}
        self.asked: list[str] = []

    def events(self, vault_id: str) -> list[AuditEvent]:
        self.asked.append(vault_id)
        return self.events_by_vault.get(vault_id, [])


AUDIT = RecordedAudit(
    [
        AuditEvent("CreateVault", 1_700_000_000_000_000, None, ["first_name", "ssn"]),
        AuditEvent("DecryptVault", 1_700_000_001_000_000, "support call", ["ssn"]),
    ]
)


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    layout = StateLayout(tmp_path / "state")
    layout.ensure()
    write_state(
        layout.state_file,
        EmulatorState(
            phase="running",
            daemon_pid=1,
            state_dir=str(layout.root),
            backend="moto",
            enclave_runtime="namespace",
            api_url="http://127.0.0.1:1/v1",
            components=[
                ComponentState("backend", "http://127.0.0.1:2", [11], True),
                ComponentState("parent", "http://127.0.0.1:3", [], False, "connection refused"),
            ],
            facts={"backend_secret_access_key": SECRET, "sigv4_principal": {"secret_access_key": SECRET}},
        ),
    )
    return layout


@pytest.fixture
def daemon(layout: StateLayout) -> Iterator[StandInDaemon]:
    stand_in = StandInDaemon()
    with serving(layout, stand_in.handle):
        yield stand_in


@pytest.fixture
def gateway(layout: StateLayout) -> Iterator[ApiGateway]:
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    gateway = ApiGateway(GatewayConfig(), handler, Dashboard(layout, audit=lambda _state: AUDIT))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def call(
    gateway: ApiGateway, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def switch_headers(gateway: ApiGateway) -> dict[str, str]:
    return {
        CSRF_HEADER: "1",
        "Origin": f"http://127.0.0.1:{gateway.port}",
        "Content-Type": "application/json",
    }


def error_code(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


# -- the page ---------------------------------------------------------------------------------


def test_the_page_and_its_assets_are_served_with_a_strict_policy(gateway: ApiGateway) -> None:
    status, headers, body = call(gateway, "GET", "/_emulator/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="dashboard.js"' in body and b"http" not in body.replace(b"http-equiv", b"")
    policy = headers["content-security-policy"]
    assert (
        "default-src 'none'" in policy
        and "script-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
    )
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    for asset, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = call(gateway, "GET", f"/_emulator/{asset}")
        assert status == 200 and headers["content-type"].startswith(kind) and body
    # No external asset: the page works offline, and nothing is written with innerHTML.
    script = call(gateway, "GET", "/_emulator/dashboard.js")[2]
    assert b"innerHTML" not in script and b"http://" not in script and b"https://" not in script
    status, headers, _ = call(gateway, "GET", "/_emulator")
    assert status == 308 and headers["location"] == "/_emulator/"
    assert error_code(call(gateway, "GET", "/_emulator/nothing")[2]) == "NotFound"


def test_without_a_state_directory_the_gateway_has_no_dashboard() -> None:
    gateway = ApiGateway(GatewayConfig(), lambda event, context: {"statusCode": 200, "body": "{}"})
    response = gateway.dispatch(HttpRequest("GET", "/_emulator/", "", [("Host", "127.0.0.1:1")], b""))
    assert response.status == 403  # API Gateway's answer outside the stage: no method here


# -- the JSON endpoints -----------------------------------------------------------------------


def test_components_come_from_the_state_file_without_its_facts(
    gateway: ApiGateway, daemon: StandInDaemon
) -> None:
    status, _, body = call(gateway, "GET", "/_emulator/api/components")
    assert status == 200 and SECRET.encode() not in body
    data = json.loads(body)
    assert data["phase"] == "running" and data["backend"] == "moto"
    assert [(c["name"], c["healthy"], c["detail"]) for c in data["components"]] == [
        ("backend", True, ""),
        ("parent", False, "connection refused"),
    ]


def test_pcrs_show_what_is_attested_beside_the_key_policy(gateway: ApiGateway, daemon: StandInDaemon) -> None:
    data = json.loads(call(gateway, "GET", "/_emulator/api/pcrs")[2])
    view = PcrsView.from_json(data)
    rows = {row.name: row for row in view.rows}
    assert view.admitted_by == "AllowDecryptByEnclave"
    assert rows["PCR0"].measured == MEASURED.pcr0 and rows["PCR0"].policy == [MEASURED.pcr0]
    assert rows["PCR3"].matches is True and rows["PCR3"].policy == [PCR3]
    assert rows["PCR4"].matches is None and rows["PCR4"].policy == []  # not pinned by the policy
    daemon.pcr0 = "ff" * 48  # an enclave launched from changed code
    view = PcrsView.from_json(json.loads(call(gateway, "GET", "/_emulator/api/pcrs")[2]))
    rows = {row.name: row for row in view.rows}
    assert view.admitted_by is None
    assert rows["PCR0"].matches is False and rows["PCR1"].matches is True


def test_decisions_are_listed_newest_first_with_their_reasons(
    gateway: ApiGateway, daemon: StandInDaemon
) -> None:
    daemon.decisions.record(Decision(1.0, "Decrypt", "arn:k", "arn:role/i", True, "allowed by AllowDecrypt"))
    daemon.decisions.record(
        Decision(2.0, "Decrypt", "arn:k", "arn:role/i", False, "no statement matched: PCR0")
    )
    data = json.loads(call(gateway, "GET", "/_emulator/api/decisions?limit=5")[2])
    assert data["available"] is True
    assert [(d["allowed"], d["reason"]) for d in data["decisions"]] == [
        (False, "no statement matched: PCR0"),
        (True, "allowed by AllowDecrypt"),
    ]
    assert data["decisions"][0]["at"] == "1970-01-01T00:00:02.000+00:00"
    assert daemon.requests[-1] == {"op": "decisions", "limit": 5}
    for bad in ("0", "x", "501", "1&limit=2"):
        status, _, body = call(gateway, "GET", f"/_emulator/api/decisions?limit={bad}")
        assert status == 400 and error_code(body) in ("InvalidLimit", "InvalidRequest"), bad


def test_a_switch_turns_a_fault_on_and_off_through_the_daemon(
    gateway: ApiGateway, daemon: StandInDaemon
) -> None:
    data = json.loads(call(gateway, "GET", "/_emulator/api/faults")[2])
    assert [f["name"] for f in data["faults"]] == list(CATALOGUE)
    throttle = next(f for f in data["faults"] if f["name"] == "kms-throttle")
    assert throttle["active"] is False and "operation" in throttle["parameters"]
    assert {
        "route": "create (2 attempts throttled)",
        "status": 502,
        "code": "KeyGenerationFailed",
    } in throttle["answers"]
    body = json.dumps({"on": True, "params": {"operation": "Decrypt", "count": "3"}}).encode()
    status, _, reply = call(
        gateway, "POST", "/_emulator/api/faults/kms-throttle", body, switch_headers(gateway)
    )
    assert status == 200, reply
    assert json.loads(reply)["active"] == ["kms-throttle"]
    assert daemon.kms_hooks.before("Decrypt") == Injected("throttle", "Decrypt")
    listed = json.loads(call(gateway, "GET", "/_emulator/api/faults")[2])
    throttle = next(f for f in listed["faults"] if f["name"] == "kms-throttle")
    assert throttle["active"] is True and throttle["params"] == {"operation": "Decrypt", "count": "3"}
    body = json.dumps({"on": False}).encode()
    status, _, reply = call(
        gateway, "POST", "/_emulator/api/faults/kms-throttle", body, switch_headers(gateway)
    )
    assert status == 200 and json.loads(reply)["active"] == []
    assert daemon.kms_hooks.before("Decrypt") is None


def test_bad_switches_get_a_clear_error_and_change_nothing(
    gateway: ApiGateway, daemon: StandInDaemon
) -> None:
    cases = [
        ("meteor", b'{"on": true}', 404, "UnknownFault"),
        ("kms-throttle", b'{"on": tru', 400, "InvalidJson"),
        ("kms-throttle", b'{"on": "yes"}', 400, "InvalidRequest"),
        ("kms-throttle", b'{"on": true, "colour": 1}', 400, "InvalidRequest"),
        ("kms-throttle", b'{"on": true, "params": {"count": [1]}}', 400, "InvalidRequest"),
        # The daemon's own refusal (a parameter the fault does not have) is passed on.
        ("kms-throttle", b'{"on": true, "params": {"colour": "red"}}', 409, "DaemonRefused"),
        ("kms-latency", b'{"on": true}', 409, "DaemonRefused"),  # ms= is required
    ]
    for name, body, status, code in cases:
        got, _, reply = call(gateway, "POST", f"/_emulator/api/faults/{name}", body, switch_headers(gateway))
        assert (got, error_code(reply)) == (status, code), (name, body)
    assert "ms= is required" in json.loads(reply)["error"]["message"]
    assert daemon.injector.active == {}
    status, _, reply = call(gateway, "GET", "/_emulator/api/faults/kms-throttle")
    assert (status, error_code(reply)) == (405, "MethodNotAllowed")


def test_the_audit_trail_of_a_vault_newest_first(gateway: ApiGateway, daemon: StandInDaemon) -> None:
    data = json.loads(call(gateway, "GET", f"/_emulator/api/audit?vault_id={VAULT_ID}")[2])
    assert data["vault_id"] == VAULT_ID and data["truncated"] is False
    assert [(e["event"], e["reason"], e["fields"]) for e in data["entries"]] == [
        ("DecryptVault", "support call", ["ssn"]),
        ("CreateVault", None, ["first_name", "ssn"]),
    ]
    assert data["entries"][1]["at"] == "2023-11-14T22:13:20.000+00:00"
    for bad in ("", "x", "v_", "v_a/b", "v_" + "a" * 28):
        status, _, body = call(gateway, "GET", f"/_emulator/api/audit?vault_id={bad}")
        assert (status, error_code(body)) == (400, "InvalidVaultId"), bad
        # The message is the same whatever was sent: it never repeats the input.
        assert (
            json.loads(body)["error"]["message"]
            == "vault_id must be v_ followed by 1 to 27 letters or digits"
        )
    assert AUDIT.asked and all(asked == VAULT_ID for asked in AUDIT.asked)


def test_without_a_daemon_the_endpoints_say_so(gateway: ApiGateway) -> None:
    for path in ("pcrs", "decisions", "faults"):
        status, _, body = call(gateway, "GET", f"/_emulator/api/{path}")
        assert (status, error_code(body)) == (503, "DaemonUnavailable"), path


def test_the_real_supervisor_answers_the_read_only_operations(tmp_path: Path) -> None:
    """Components built but not started: the operations answer, and say why there is nothing."""
    config = EmulatorConfig(state_dir=tmp_path / "state")
    supervisor = Supervisor(config, config.layout)
    layout = config.layout
    layout.ensure()
    supervisor.publish()
    stop = threading.Event()
    dashboard = Dashboard(layout)
    with serving(layout, lambda request: supervisor.handle(request, stop)):
        pcrs = dashboard.pcrs()
        assert pcrs.enclave_id == "" and pcrs.admitted_by is None and pcrs.detail == "no enclave is running"
        assert all(row.measured is None and row.matches is None for row in pcrs.rows)
        decisions = dashboard.decisions(None)
        assert decisions.available is False and decisions.detail == "the KMS front is not running"
        reply = supervisor.handle({"op": "decisions", "limit": "many"}, stop)
        assert reply == {"ok": False, "error": "limit must be a whole number within 1..500"}
        faults = dashboard.handle(
            HttpRequest("GET", "/_emulator/api/faults", "", [("Host", "127.0.0.1:1")], b"")
        )
        assert faults.status == 409 and b"faults need a running emulator" in faults.body
        assert [c.name for c in dashboard.components().components] == [c.name for c in supervisor.components]


# -- whom it answers --------------------------------------------------------------------------


def test_requests_from_other_hosts_are_refused(layout: StateLayout, daemon: StandInDaemon) -> None:
    dashboard = Dashboard(layout, audit=lambda _state: AUDIT)
    for source in ("192.0.2.7", "10.0.0.1", "::ffff:192.0.2.7", "fe80::1", "not-an-address"):
        response = dashboard.handle(
            HttpRequest("GET", "/_emulator/api/components", "", [("Host", "127.0.0.1:1")], b"", source)
        )
        assert (response.status, error_code(response.body)) == (403, "NotLoopback"), source
    for source in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        response = dashboard.handle(
            HttpRequest("GET", "/_emulator/api/components", "", [("Host", "localhost:1")], b"", source)
        )
        assert response.status == 200, source


def test_a_rebound_host_name_is_refused(gateway: ApiGateway, daemon: StandInDaemon) -> None:
    for host in ("attacker.example", "attacker.example:80", "127.0.0.1.attacker.example", ""):
        status, _, body = call(gateway, "GET", "/_emulator/api/components", headers={"Host": host})
        assert (status, error_code(body)) == (403, "HostNotAllowed"), host
    for host in (f"127.0.0.1:{gateway.port}", f"localhost:{gateway.port}", f"[::1]:{gateway.port}"):
        assert call(gateway, "GET", "/_emulator/api/components", headers={"Host": host})[0] == 200, host


def test_a_switch_without_the_header_or_from_another_origin_is_refused(
    gateway: ApiGateway, daemon: StandInDaemon
) -> None:
    body = b'{"on": true}'
    own = f"http://127.0.0.1:{gateway.port}"
    refused = [
        ({"Origin": own}, "CsrfHeaderMissing"),  # what a cross-site form or simple fetch could send
        ({CSRF_HEADER: "0", "Origin": own}, "CsrfHeaderMissing"),
        ({CSRF_HEADER: "1"}, "CrossOrigin"),  # no Origin at all
        ({CSRF_HEADER: "1", "Origin": "http://attacker.example"}, "CrossOrigin"),
        ({CSRF_HEADER: "1", "Origin": "http://127.0.0.1:1"}, "CrossOrigin"),  # another local port
        ({CSRF_HEADER: "1", "Origin": "null"}, "CrossOrigin"),
        ({CSRF_HEADER: "1", "Origin": own, "Sec-Fetch-Site": "cross-site"}, "CrossOrigin"),
    ]
    for headers, code in refused:
        status, _, reply = call(gateway, "POST", "/_emulator/api/faults/kms-throttle", body, headers)
        assert (status, error_code(reply)) == (403, code), headers
    assert daemon.injector.active == {}
    assert not [r for r in daemon.requests if r.get("action") == "enable"]  # the daemon was never asked
    headers = {CSRF_HEADER: "1", "Origin": own, "Sec-Fetch-Site": "same-origin"}
    assert call(gateway, "POST", "/_emulator/api/faults/kms-throttle", body, headers)[0] == 200
    assert list(daemon.injector.active) == ["kms-throttle"]


# -- the daemon's side ------------------------------------------------------------------------


def test_pcr_report_reads_every_decrypt_statement_of_the_policy() -> None:
    rolled = EnclaveMeasurements(pcr0="d3" * 48, pcr1="e4" * 48, pcr2="f5" * 48)
    policy = build_key_policy(
        KeyPolicyParams(
            account_id="123456789012",
            instance_role_arn=INSTANCE_ROLE,
            api_role_arn="arn:aws:iam::123456789012:role/api",
            measurements=MEASURED,
            pcr3=PCR3,
            additional_measurements=(rolled,),
        )
    )
    view = pcr_report("i-enc2", attested(), policy)
    assert [image.sid for image in view.images] == ["AllowDecryptByEnclave", "AllowDecryptByEnclave2"]
    assert view.admitted_by == "AllowDecryptByEnclave"
    rows = {row.name: row for row in view.rows}
    assert rows["PCR0"].policy == sorted([MEASURED.pcr0, rolled.pcr0]) and rows["PCR0"].matches is True
    # PCR0 of the first image with PCR1 of the second: no single statement admits it.
    mixed = {**attested(), 1: bytes.fromhex(rolled.pcr1)}
    assert pcr_report("i-enc3", mixed, policy).admitted_by is None
    assert pcr_report("", {}, None).images == []


def test_checked_limit() -> None:
    assert (
        checked_limit(None, 50, 500) == 50
        and checked_limit("7", 50, 500) == 7
        and checked_limit(500, 1, 500) == 500
    )
    for bad in (0, -1, 501, "1.5", "", True, 2.0):
        if bad == "":
            assert checked_limit(bad, 50, 500) == 50
            continue
        with pytest.raises(ValueError, match="limit must be a whole number"):
            checked_limit(bad, 50, 500)


class GarbledControl:
    """A control channel whose replies are not what the daemon sends."""

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        return {"ok": True, "result": ["not", "an", "object"]}


def test_an_unexpected_failure_is_a_json_500_and_names_no_detail(layout: StateLayout) -> None:
    dashboard = Dashboard(layout, control=GarbledControl())
    response = dashboard.handle(
        HttpRequest("GET", "/_emulator/api/faults", "", [("Host", "127.0.0.1:1")], b"")
    )
    assert response.status == 500
    assert json.loads(response.body) == {
        "error": {
            "code": "DashboardError",
            "message": "the dashboard failed to answer; see the gateway's log",
        }
    }


def test_the_gateway_routes_the_dashboard_before_its_faults_and_signatures(
    layout: StateLayout, daemon: StandInDaemon
) -> None:
    gateway = ApiGateway(
        GatewayConfig(),
        lambda event, context: {"statusCode": 200, "body": "{}"},
        Dashboard(layout, audit=lambda _state: AUDIT),
    )
    gateway.faults.throttle(10)  # API Gateway's own throttle covers the stage, not the dashboard
    ok = gateway.dispatch(HttpRequest("GET", "/_emulator/api/components", "", [("Host", "127.0.0.1:1")], b""))
    assert ok.status == 200
    refused = gateway.dispatch(
        HttpRequest("GET", "/_emulator/", "", [("Host", "127.0.0.1:1")], b"", source_ip="198.51.100.4")
    )
    assert (refused.status, error_code(refused.body)) == (403, "NotLoopback")
    assert (
        gateway.dispatch(HttpRequest("GET", "/v1/vaults", "", [("Host", "127.0.0.1:1")], b"")).status == 429
    )
