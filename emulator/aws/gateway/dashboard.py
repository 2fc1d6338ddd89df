"""The emulator's dashboard: ``/_emulator/`` on the gateway, for the person at this machine.

One page (``dashboard_ui/``: HTML, vanilla JS and CSS, no external assets, so it works
offline) renders JSON endpoints under ``/_emulator/api/``:

* ``components``: the status table the daemon publishes in its state file (health included);
* ``pcrs``: the PCRs the NSM attests for the running enclave beside those the key policy pins;
* ``decisions``: the KMS front's recent decisions with their reasons;
* ``faults``: the fault catalogue, which faults are on; ``POST faults/<name>`` switches one
  (``{"on": true, "params": {...}}``) through the daemon's control socket;
* ``audit?vault_id=...``: a vault's audit trail, read from the table with the emulator's
  backend credentials. Audit records hold field names, never values.

Nothing here shows plaintext or key material: the components' facts (which include test
credentials) are not passed on, and PCRs, ARNs and decisions are not secrets.

The dashboard answers loopback peers only, and only requests whose ``Host`` is a loopback
name (a DNS-rebinding page reaches 127.0.0.1 under its own host name). A switch changes the
emulator's state, so it also needs the :data:`CSRF_HEADER` header (a cross-origin page cannot
send it without a CORS preflight, which is never granted) and an ``Origin`` equal to the
dashboard's own. Every answer carries a strict Content-Security-Policy.

The daemon's side, :func:`pcr_report` and :func:`decision_report`, builds the results of the
``pcrs`` and ``decisions`` control operations with the same dataclasses the gateway reads back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from emulator.aws.gateway.event import HttpRequest, HttpResponse
from emulator.daemon.config import StateLayout
from emulator.daemon.control import CONTROL_TIMEOUT, control_request
from emulator.daemon.state import EmulatorState, read_state
from emulator.faults.catalogue import CATALOGUE
from emulator.tools.client import AuditEvent, AuditReader
from vault.api.ids import VAULT_ID_PATTERN

log = logging.getLogger("emulator.aws.gateway.dashboard")

PREFIX = "/_emulator"
DASHBOARD_PATH = PREFIX + "/"
API_PREFIX = PREFIX + "/api/"
#: A state-changing request must carry this header with the value ``1``.
CSRF_HEADER = "X-Emulator-Dashboard"
UI_DIR = Path(__file__).with_name("dashboard_ui")
#: Served files: path below ``/_emulator/`` -> (file in UI_DIR, content type).
ASSETS = {
    "": ("index.html", "text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
#: Reads wait this long for the daemon, which answers one control request at a time.
READ_TIMEOUT = 15.0
#: A switch may relaunch the enclave (minutes for a cold container build): the daemon's own bound.
SWITCH_TIMEOUT = CONTROL_TIMEOUT
DEFAULT_DECISIONS = 50
MAX_DECISIONS = 500
#: The newest audit records shown.
MAX_AUDIT = 200
MAX_BODY = 64 * 1024
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
#: The PCRs shown even where the policy does not pin them (PCR4: the instance).
SHOWN_PCRS = (0, 1, 2, 3, 4, 8)
#: Key policy condition keys naming a PCR; PCR0 appears as ``ImageSha384``.
_POLICY_PCR = re.compile(r"^kms:RecipientAttestation:(?:PCR(?P<index>[0-9]{1,2})|(?P<image>ImageSha384))$")
_FAULT_PATH = re.compile(r"^faults/(?P<name>[a-z0-9-]{1,64})$")
_VAULT_ID = re.compile(VAULT_ID_PATTERN)


class DashboardError(Exception):
    """A refused dashboard request: ``code`` is stable, ``message`` says why (never a value)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# -- results (the JSON of the endpoints) ------------------------------------------------------


@dataclass(frozen=True)
class ComponentView:
    name: str
    healthy: bool
    detail: str
    address: str
    pids: list[int]
    started_seconds: float | None


@dataclass(frozen=True)
class ComponentsView:
    phase: str
    backend: str
    enclave_runtime: str
    api_url: str
    error: str
    components: list[ComponentView]


@dataclass(frozen=True)
class PcrRow:
    """One PCR: what the NSM attests, what the policy's decrypt statements pin, whether they agree."""

    name: str
    measured: str | None
    policy: list[str]
    #: ``None`` where the policy does not pin this PCR.
    matches: bool | None


@dataclass(frozen=True)
class PolicyImage:
    """One decrypt statement of the key policy: the PCRs of one admitted image."""

    sid: str
    pcrs: dict[str, str]


@dataclass(frozen=True)
class PcrsView:
    enclave_id: str
    rows: list[PcrRow]
    images: list[PolicyImage]
    #: The decrypt statement whose every PCR the running enclave has (``None``: KMS refuses it).
    admitted_by: str | None
    detail: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PcrsView:
        return cls(
            enclave_id=str(data.get("enclave_id", "")),
            rows=[PcrRow(**row) for row in data.get("rows", [])],
            images=[PolicyImage(**image) for image in data.get("images", [])],
            admitted_by=data.get("admitted_by"),
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class DecisionView:
    at: str
    operation: str
    key_id: str
    principal: str
    allowed: bool
    reason: str


@dataclass(frozen=True)
class DecisionsView:
    available: bool
    decisions: list[DecisionView] = field(default_factory=list)
    #: Why there are none to show, when ``available`` is false.
    detail: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DecisionsView:
        return cls(
            available=bool(data.get("available")),
            decisions=[DecisionView(**entry) for entry in data.get("decisions", [])],
            detail=str(data.get("detail", "")),
        )


@dataclass(frozen=True)
class AnswerView:
    route: str
    status: int
    code: str | None


@dataclass(frozen=True)
class FaultView:
    name: str
    injection: str
    one_shot: bool
    active: bool
    #: The parameters it was switched on with.
    params: dict[str, Any]
    #: Parameter name -> what it means.
    parameters: dict[str, str]
    answers: list[AnswerView]


@dataclass(frozen=True)
class FaultsView:
    faults: list[FaultView]


@dataclass(frozen=True)
class SwitchView:
    name: str
    on: bool
    #: The faults on after the switch, in the order they were switched on.
    active: list[str]
    #: What the daemon did (pids stopped, PCR0 relaunched, counters): never a secret.
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditEntryView:
    event: str
    at: str
    reason: str | None
    #: Field names only: the audit holds no values.
    fields: list[str]


@dataclass(frozen=True)
class AuditView:
    vault_id: str
    #: Newest first.
    entries: list[AuditEntryView]
    #: More records exist than are shown.
    truncated: bool


def to_json(result: object) -> dict[str, Any]:
    """A result dataclass as JSON-ready data."""
    if not dataclasses.is_dataclass(result) or isinstance(result, type):
        raise TypeError(f"{type(result).__name__} is not a result dataclass")
    return dataclasses.asdict(result)


# -- the daemon's side ------------------------------------------------------------------------


class DecisionRecord(Protocol):
    """One decision of the KMS front (``emulator.aws.kms.decisions.Decision``)."""

    @property
    def at(self) -> object: ...

    @property
    def operation(self) -> str: ...

    @property
    def key_id(self) -> str | None: ...

    @property
    def principal(self) -> str | None: ...

    @property
    def allowed(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class DecisionSource(Protocol):
    def recent(self, limit: int) -> Sequence[DecisionRecord]: ...


def _pcr_name(index: int) -> str:
    return f"PCR{index}"


def _policy_images(policy: Mapping[str, Any]) -> list[PolicyImage]:
    """The decrypt statements' attestation conditions, by statement."""
    images = []
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        if "kms:Decrypt" not in (actions if isinstance(actions, list) else [actions]):
            continue
        pcrs: dict[str, str] = {}
        for operator, conditions in (statement.get("Condition") or {}).items():
            if not operator.startswith("StringEquals") or not isinstance(conditions, Mapping):
                continue
            for key, value in conditions.items():
                match = _POLICY_PCR.match(key)
                if match is not None and isinstance(value, str):
                    name = "PCR0" if match.group("image") else _pcr_name(int(match.group("index")))
                    pcrs[name] = value.lower()
        if pcrs:
            images.append(PolicyImage(str(statement.get("Sid", "")), dict(sorted(pcrs.items()))))
    return images


def pcr_report(
    enclave_id: str, measured: Mapping[int, bytes], policy: Mapping[str, Any] | None, detail: str = ""
) -> PcrsView:
    """The ``pcrs`` control operation's result: attested PCRs beside the policy's."""
    images = _policy_images(policy) if policy is not None else []
    values = {_pcr_name(index): value.hex() for index, value in measured.items()}
    shown = {_pcr_name(index) for index in SHOWN_PCRS} | {name for image in images for name in image.pcrs}
    rows = []
    for name in sorted(shown, key=lambda n: int(n[3:])):
        pinned = sorted({image.pcrs[name] for image in images if name in image.pcrs})
        value = values.get(name)
        rows.append(
            PcrRow(
                name=name,
                measured=value,
                policy=pinned,
                matches=(value is not None and value in pinned) if pinned else None,
            )
        )
    admitted_by = next(
        (
            image.sid
            for image in images
            if all(values.get(name) == value for name, value in image.pcrs.items())
        ),
        None,
    )
    return PcrsView(enclave_id, rows, images, admitted_by, detail)


def _timestamp(at: object) -> str:
    if isinstance(at, dt.datetime):
        return at.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    if isinstance(at, int | float):
        return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")
    return str(at)


def checked_limit(value: object, default: int, maximum: int) -> int:
    """A count asked for (absent: ``default``), within 1..``maximum``."""
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError(f"limit must be a whole number within 1..{maximum}")
    limit = int(value)
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit must be a whole number within 1..{maximum}")
    return limit


def decision_report(source: DecisionSource | None, limit: int, detail: str = "") -> DecisionsView:
    """The ``decisions`` control operation's result: the newest first."""
    if source is None:
        return DecisionsView(False, [], detail or "the KMS front keeps no decision log")
    return DecisionsView(
        True,
        [
            DecisionView(
                at=_timestamp(decision.at),
                operation=decision.operation,
                key_id=decision.key_id or "",
                principal=decision.principal or "",
                allowed=decision.allowed,
                reason=decision.reason,
            )
            for decision in source.recent(limit)
        ],
    )


# -- the gateway's side -----------------------------------------------------------------------


class ControlChannel(Protocol):
    """The daemon's control socket (:func:`emulator.daemon.control.control_request`)."""

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SocketControl:
    layout: StateLayout

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        return control_request(self.layout, request, timeout=timeout)


class AuditSource(Protocol):
    def events(self, vault_id: str) -> list[AuditEvent]: ...


def table_audit(state: EmulatorState) -> AuditSource:
    """The table's audit records, read with the backend's credentials (as an operator would)."""
    facts = state.facts
    try:
        return AuditReader(
            table_name=str(facts["table_name"]),
            endpoint_url=str(facts["dynamodb_endpoint"]),
            region=str(facts["region"]),
            aws_access_key_id=str(facts["backend_access_key_id"]),
            aws_secret_access_key=str(facts["backend_secret_access_key"]),
        )
    except KeyError:
        raise DashboardError(503, "AuditUnavailable", "the table is not provisioned yet") from None


def _error(status: int, code: str, message: str) -> HttpResponse:
    return _json(status, {"error": {"code": code, "message": message}})


def _json(status: int, data: Any) -> HttpResponse:
    body = json.dumps(data, separators=(",", ":")).encode()
    return HttpResponse(status, [("Content-Type", "application/json"), *SECURITY_HEADERS], body)


def _header(request: HttpRequest, name: str) -> str | None:
    return next((value for key, value in request.headers if key.lower() == name.lower()), None)


def _is_loopback_ip(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = _host_name(host.strip()).lower()
    return name in LOOPBACK_NAMES or _is_loopback_ip(name)


class Dashboard:
    """Answers every request below ``/_emulator/`` but the health route."""

    def __init__(
        self,
        layout: StateLayout,
        control: ControlChannel | None = None,
        audit: Callable[[EmulatorState], AuditSource] = table_audit,
    ) -> None:
        self.layout = layout
        self.control = control if control is not None else SocketControl(layout)
        self._make_audit = audit
        self._audit: AuditSource | None = None
        self._audit_lock = threading.Lock()

    @staticmethod
    def serves(raw_path: str) -> bool:
        return raw_path == PREFIX or raw_path.startswith(DASHBOARD_PATH)

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            self._admit(request)
            return self._route(request)
        except DashboardError as exc:
            return _error(exc.status, exc.code, exc.message)
        except Exception as exc:  # answered as JSON like every other refusal; the type is logged
            log.exception("dashboard request failed: %s", type(exc).__name__)
            return _error(500, "DashboardError", "the dashboard failed to answer; see the gateway's log")

    # -- who may ask -----------------------------------------------------------------

    @staticmethod
    def _admit(request: HttpRequest) -> None:
        if not _is_loopback_ip(request.source_ip):
            raise DashboardError(403, "NotLoopback", "the dashboard answers loopback clients only")
        host = _header(request, "Host")
        if not _loopback_host(host):
            raise DashboardError(
                403, "HostNotAllowed", "the dashboard answers requests for a loopback host only"
            )
        if request.method in ("GET", "HEAD"):
            return
        if _header(request, CSRF_HEADER) != "1":
            raise DashboardError(403, "CsrfHeaderMissing", f"a change needs the header {CSRF_HEADER}: 1")
        if _header(request, "Origin") != f"http://{host}":
            raise DashboardError(403, "CrossOrigin", "a change must come from the dashboard's own origin")
        site = _header(request, "Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            raise DashboardError(403, "CrossOrigin", "a change must come from the dashboard's own origin")

    # -- routes ----------------------------------------------------------------------

    def _route(self, request: HttpRequest) -> HttpResponse:
        path = request.raw_path
        if path == PREFIX:
            return HttpResponse(308, [("Location", DASHBOARD_PATH), *SECURITY_HEADERS])
        rest = unquote(path[len(DASHBOARD_PATH) :])
        reading = request.method in ("GET", "HEAD")
        if rest in ASSETS:
            if not reading:
                raise DashboardError(405, "MethodNotAllowed", "this path answers GET only")
            return self._asset(rest)
        if not rest.startswith("api/"):
            raise DashboardError(404, "NotFound", "no such dashboard path")
        endpoint = rest[len("api/") :]
        query = parse_qs(request.raw_query, keep_blank_values=True)
        readers: dict[str, Callable[[], object]] = {
            "components": self.components,
            "pcrs": self.pcrs,
            "decisions": lambda: self.decisions(_one(query, "limit")),
            "faults": self.faults,
            "audit": lambda: self.audit(_one(query, "vault_id")),
        }
        if endpoint in readers:
            if not reading:
                raise DashboardError(405, "MethodNotAllowed", "this endpoint answers GET only")
            return _json(200, to_json(readers[endpoint]()))
        switch = _FAULT_PATH.match(endpoint)
        if switch is not None:
            if request.method != "POST":
                raise DashboardError(405, "MethodNotAllowed", "a switch answers POST only")
            return _json(200, to_json(self.switch(switch.group("name"), request.body)))
        raise DashboardError(404, "NotFound", "no such dashboard endpoint")

    @staticmethod
    def _asset(name: str) -> HttpResponse:
        file_name, content_type = ASSETS[name]
        body = (UI_DIR / file_name).read_bytes()
        return HttpResponse(200, [("Content-Type", content_type), *SECURITY_HEADERS], body)

    # -- endpoints -------------------------------------------------------------------

    def _state(self) -> EmulatorState:
        state = read_state(self.layout.state_file)
        if state is None:
            raise DashboardError(503, "DaemonUnavailable", "the emulator has recorded no state")
        return state

    def _ask(self, request: dict[str, Any], timeout: float = READ_TIMEOUT) -> Any:
        try:
            reply = self.control.request(request, timeout)
        except TimeoutError:
            raise DashboardError(
                503, "DaemonBusy", "the daemon did not answer in time (a fault may still be switching)"
            ) from None
        except (OSError, ValueError):
            raise DashboardError(
                503, "DaemonUnavailable", "the daemon's control socket does not answer"
            ) from None
        if not reply.get("ok"):
            raise DashboardError(409, "DaemonRefused", str(reply.get("error") or "the daemon refused"))
        return reply.get("result")

    def components(self) -> ComponentsView:
        state = self._state()
        return ComponentsView(
            phase=state.phase,
            backend=state.backend,
            enclave_runtime=state.enclave_runtime,
            api_url=state.api_url,
            error=state.error,
            components=[
                ComponentView(c.name, c.healthy, c.detail, c.address, list(c.pids), c.started_seconds)
                for c in state.components
            ],
        )

    def pcrs(self) -> PcrsView:
        return PcrsView.from_json(self._ask({"op": "pcrs"}))

    def decisions(self, limit: str | None) -> DecisionsView:
        try:
            count = checked_limit(limit, DEFAULT_DECISIONS, MAX_DECISIONS)
        except ValueError as exc:
            raise DashboardError(400, "InvalidLimit", str(exc)) from None
        return DecisionsView.from_json(self._ask({"op": "decisions", "limit": count}))

    def faults(self) -> FaultsView:
        listed = self._ask({"op": "fault", "action": "list"})
        active: dict[str, dict[str, Any]] = dict(listed.get("active", {}))
        return FaultsView(
            [
                FaultView(
                    name=name,
                    injection=kind.spec.injection,
                    one_shot=kind.spec.one_shot,
                    active=name in active,
                    params=dict(active.get(name, {})),
                    parameters=dict(kind.spec.params),
                    answers=[AnswerView(a.route, a.status, a.code) for a in kind.spec.answers],
                )
                for name, kind in CATALOGUE.items()
            ]
        )

    def switch(self, name: str, body: bytes) -> SwitchView:
        if name not in CATALOGUE:
            raise DashboardError(404, "UnknownFault", f"no such fault; known: {', '.join(CATALOGUE)}")
        on, params = _switch_body(body)
        request: dict[str, Any] = {"op": "fault", "action": "enable" if on else "disable", "name": name}
        if params:
            request["params"] = params
        result = self._ask(request, timeout=SWITCH_TIMEOUT)
        log.info("dashboard switched fault %s %s", name, "on" if on else "off")
        return SwitchView(name, on, list(result.get("active", {})), dict(result.get("result") or {}))

    def audit(self, vault_id: str | None) -> AuditView:
        if not vault_id or not _VAULT_ID.match(vault_id):
            raise DashboardError(
                400, "InvalidVaultId", "vault_id must be v_ followed by 1 to 27 letters or digits"
            )
        source = self._audit_source()
        try:
            events = source.events(vault_id)
        except Exception as exc:  # noqa: BLE001 - any failure of the table read; its type is logged
            log.warning("reading the audit trail failed: %s", type(exc).__name__)
            raise DashboardError(502, "AuditUnavailable", "the table could not be read") from None
        newest = sorted(events, key=lambda event: event.timestamp_us, reverse=True)
        return AuditView(
            vault_id,
            [
                AuditEntryView(
                    event=event.event,
                    at=dt.datetime.fromtimestamp(event.timestamp_us / 1e6, dt.UTC).isoformat(
                        timespec="milliseconds"
                    ),
                    reason=event.reason,
                    fields=list(event.fields),
                )
                for event in newest[:MAX_AUDIT]
            ],
            truncated=len(newest) > MAX_AUDIT,
        )

    def _audit_source(self) -> AuditSource:
        with self._audit_lock:
            if self._audit is None:
                self._audit = self._make_audit(self._state())
            return self._audit


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise DashboardError(400, "InvalidRequest", f"{name} may be given once")
    return values[0]


def _switch_body(body: bytes) -> tuple[bool, dict[str, str | int | float | bool]]:
    if len(body) > MAX_BODY:
        raise DashboardError(413, "RequestTooLong", f"a switch body has at most {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        position = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise DashboardError(400, "InvalidJson", f"body: invalid JSON{position}") from None
    if not isinstance(data, dict):
        raise DashboardError(
            400, "InvalidRequest", 'body: must be an object {"on": true|false, "params": {}}'
        )
    unknown = sorted(set(data) - {"on", "params"})
    if unknown:
        raise DashboardError(
            400, "InvalidRequest", f"body: unknown member(s) {', '.join(unknown)}; known: on, params"
        )
    on = data.get("on")
    if not isinstance(on, bool):
        raise DashboardError(400, "InvalidRequest", "body.on: must be true or false")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise DashboardError(400, "InvalidRequest", "body.params: must be an object")
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool):
            raise DashboardError(
                400, "InvalidRequest", f"body.params.{key}: must be a string, number or boolean"
            )
    return on, params
