"""Faults a running emulator can be put through, and the client that switches them.

Every fault is switched on and off at run time through the daemon's control socket
(``{"op": "fault", ...}``, answered by :mod:`emulator.faults.injector`), without
restarting the components it does not touch. Each fault below carries its own
:class:`FaultSpec`: how it is injected and what the API must answer while it is on; the
end-to-end tests in ``tests/e2e/faults`` hold the API to those answers. A fault acts
only through the public fault interfaces of :mod:`emulator.faults.hooks`.

From Python::

    faults = FaultController(state)           # an EmulatorState, or a StateLayout
    with faults.injected("kms-throttle", operation="Decrypt"):
        ...                                    # decrypts now fail with a stable 5xx
    faults.enable("parent-down"); faults.disable("parent-down")

From the shell: ``vault-emulator fault list``, ``vault-emulator fault NAME on k=v ...``,
``vault-emulator fault NAME off``, ``vault-emulator fault clear``.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from emulator.daemon.config import StateLayout
from emulator.daemon.control import CONTROL_TIMEOUT, control_request
from emulator.daemon.state import EmulatorState
from emulator.faults.hooks import (
    MAX_COUNT,
    MAX_DELAY_MS,
    MODES,
    TARGETS,
    EnclaveControl,
    FaultHooks,
    Mode,
    ParentControl,
    ProcessError,
    Target,
    WriteFault,
    WriteFaultTarget,
)

T = TypeVar("T")
V = TypeVar("V")
#: Bound of "on until switched off" counters (throttled requests, IMDS failures).
UNTIL_OFF = 100_000
IMDS_UNTIL_OFF = 10_000
#: How long a killed enclave may take to be reaped by its sandbox.
EXIT_WAIT = 5.0
MAX_WAIT = 30.0


@dataclass(frozen=True)
class Answer:
    """What the API answers a route while a fault is on (``status`` 2xx: the fault is absorbed)."""

    route: str
    status: int
    code: str | None = None


@dataclass(frozen=True)
class FaultSpec:
    name: str
    injection: str
    answers: tuple[Answer, ...]
    params: Mapping[str, str] = field(default_factory=dict)
    #: Happens once when enabled (nothing stays on to switch off).
    one_shot: bool = False


def _spec(name: str, injection: str, *answers: Answer, one_shot: bool = False, **params: str) -> FaultSpec:
    return FaultSpec(name, injection, answers, params, one_shot)


class FaultError(RuntimeError):
    """The daemon refused or failed a fault operation; ``str()`` says why."""


# -- what faults act on ----------------------------------------------------------------------


class CredentialService(Protocol):
    """IMDS, as the credential faults see it."""

    credential_lifetime: timedelta

    @property
    def faults(self) -> FaultHooks: ...

    def rotate(self) -> None: ...


@dataclass(frozen=True)
class FaultServices:
    """What is running now, typed by the interface faults use (``None``: not running)."""

    kms_hooks: FaultHooks | None = None
    imds: CredentialService | None = None
    dynamodb_proxy: WriteFaultTarget | None = None
    parent: ParentControl | None = None
    enclave: EnclaveControl | None = None


class FaultHost(Protocol):
    """What faults need from the daemon."""

    def services(self) -> FaultServices: ...

    def relaunch_enclave(self, overrides: dict[str, str] | None) -> dict[str, Any]: ...

    def publish(self, live: bool = False) -> None: ...


def _running(value: V | None, name: str) -> V:
    if value is None:
        raise FaultError(f"this emulator has no {name} running")
    return value


# -- parameters ------------------------------------------------------------------------------


def _number(params: Mapping[str, Any], name: str, default: float | None, low: float, high: float) -> float:
    raw = params.get(name, default)
    if raw is None:
        raise FaultError(f"{name}= is required")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FaultError(f"{name}= must be a number") from None
    if not low <= value <= high:
        raise FaultError(f"{name}= must be within {low:g}..{high:g}")
    return value


def _flag(params: Mapping[str, Any], name: str) -> bool:
    raw = params.get(name, False)
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).lower() in ("0", "false", "no", "off", ""):
        return False
    raise FaultError(f"{name}= must be true or false")


def _text(params: Mapping[str, Any], name: str) -> str | None:
    raw = params.get(name)
    return None if raw in (None, "") else str(raw)


# -- the faults ------------------------------------------------------------------------------


class Fault(abc.ABC):
    """One switch of the catalogue; ``spec`` says what it does and what the API answers."""

    spec: ClassVar[FaultSpec]
    #: Faults this one ends when switched on (released first, then no longer listed as active).
    supersedes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, host: FaultHost) -> None:
        self.host = host

    def services(self) -> FaultServices:
        return self.host.services()

    @abc.abstractmethod
    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def disable(self) -> dict[str, Any]:
        return {}

    def release(self) -> None:  # noqa: B027 - only faults that would block a shutdown need it
        """Undo whatever would keep the daemon from stopping its components (shutdown)."""


class EnclaveKill(Fault):
    spec = _spec(
        "enclave-kill",
        "SIGKILL the enclave program inside its sandbox, optionally once a KMS Decrypt of the "
        "enclave is in flight (held at the KMS front by kms-latency); off: relaunch the image, measured "
        "again",
        Answer("decrypt", 503, "EnclaveUnavailable"),
        Answer("create/get/update/delete", 200),
        in_flight="wait for a Decrypt in flight at the KMS front before killing (default false)",
        wait="seconds to wait for it (default 5)",
    )

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        enclave = _running(self.services().enclave, "enclave")
        if not enclave.running():
            raise FaultError("the enclave is not running")
        waited = 0.0
        if _flag(params, "in_flight"):
            wait = _number(params, "wait", 5.0, 0.0, MAX_WAIT)
            hooks = _running(self.services().kms_hooks, "kms-front")
            began = time.monotonic()
            if not hooks.wait_in_flight("Decrypt", wait):
                raise FaultError(f"no enclave decrypt reached KMS within {wait:g} s; nothing was killed")
            waited = time.monotonic() - began
        try:
            victims = enclave.kill_program(EXIT_WAIT)
        except ProcessError as exc:
            raise FaultError(str(exc)) from None
        self.host.publish(live=True)
        return {
            "killed": victims,
            "waited_seconds": round(waited, 3),
            "sandbox_exited": not enclave.running(),
        }

    def disable(self) -> dict[str, Any]:
        began = time.monotonic()
        # The relaunch measures the image as it is now; its PCR0 is what the NSM attests.
        launched = self.host.relaunch_enclave(None)
        return {
            "enclave_pids": _running(self.services().enclave, "enclave").pids(),
            "pcr0": launched.get("pcr0"),
            "policy_pcr0": launched.get("policy_pcr0"),
            "seconds": round(time.monotonic() - began, 3),
        }


class EnclaveRestart(Fault):
    spec = _spec(
        "enclave-restart",
        "relaunch the enclave from its image in the state directory, measured again (stop, start, "
        "wait for its socket)",
        Answer("decrypt while restarting", 503, "EnclaveUnavailable"),
        Answer("decrypt afterwards", 200),
        one_shot=True,
    )
    # The relaunch brings a killed enclave back too.
    supersedes = ("enclave-kill",)

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        enclave = _running(self.services().enclave, "enclave")
        before = enclave.pids()
        began = time.monotonic()
        # The relaunch measures the image as it is now; its PCR0 is what the NSM attests.
        launched = self.host.relaunch_enclave(None)
        return {
            "previous_pids": before,
            "enclave_pids": enclave.pids(),
            "pcr0": launched.get("pcr0"),
            "policy_pcr0": launched.get("policy_pcr0"),
            "seconds": round(time.monotonic() - began, 3),
        }


class ParentDown(Fault):
    spec = _spec(
        "parent-down",
        "stop the parent process (SIGTERM, or SIGKILL with hard=true); off: start it on the same port",
        Answer("decrypt", 502, "ParentUnreachable"),
        Answer("create/get/update/delete", 200),
        hard="SIGKILL instead of a graceful stop (default false)",
    )
    # A frozen parent cannot act on SIGTERM; it is continued first.
    supersedes = ("parent-freeze",)

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        parent = _running(self.services().parent, "parent")
        try:
            pid = parent.take_down(hard=_flag(params, "hard"))
        except ProcessError as exc:
            raise FaultError(str(exc)) from None
        self.host.publish(live=True)
        return {"stopped_pid": pid, "port": parent.port}

    def disable(self) -> dict[str, Any]:
        parent = _running(self.services().parent, "parent")
        began = time.monotonic()
        parent.resume()
        self.host.publish(live=True)
        return {
            "parent_pids": parent.pids(),
            "port": parent.port,
            "seconds": round(time.monotonic() - began, 3),
        }


class ParentFreeze(Fault):
    spec = _spec(
        "parent-freeze",
        "SIGSTOP the parent (connections are accepted, never answered); off: SIGCONT",
        Answer("decrypt (after the API's 5 s parent timeout)", 504, "ParentTimeout"),
    )

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return {"frozen_pid": _running(self.services().parent, "parent").freeze()}
        except ProcessError as exc:
            raise FaultError(str(exc)) from None

    def disable(self) -> dict[str, Any]:
        try:
            return {"resumed_pid": _running(self.services().parent, "parent").thaw()}
        except ProcessError as exc:
            raise FaultError(str(exc)) from None

    def release(self) -> None:
        # A stopped process ignores SIGTERM until it is continued; the shutdown would wait for SIGKILL.
        with contextlib.suppress(FaultError, OSError):
            self.disable()


class KmsThrottle(Fault):
    spec = _spec(
        "kms-throttle",
        "the KMS front answers ThrottlingException to the next `count` requests",
        Answer("create (2 attempts throttled)", 502, "KeyGenerationFailed"),
        Answer(
            "decrypt (enclave's retries end inside the parent's 2.5 s read budget)",
            502,
            "EnclaveDecryptFailed",
        ),
        Answer("decrypt (enclave's retry back-off outlasts that budget)", 504, "EnclaveTimeout"),
        operation="Decrypt or GenerateDataKeyPairWithoutPlaintext (default: every operation)",
        count="requests to throttle (default 100000: on until switched off)",
    )

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        count = int(_number(params, "count", UNTIL_OFF, 1, UNTIL_OFF))
        operation = _text(params, "operation")
        hooks = _running(self.services().kms_hooks, "kms-front")
        hooks.clear("throttle")
        hooks.throttle(count, operation)
        return {"count": count, "operation": operation}

    def disable(self) -> dict[str, Any]:
        _running(self.services().kms_hooks, "kms-front").clear("throttle")
        return {}


class KmsLatency(Fault):
    spec = _spec(
        "kms-latency",
        "the KMS front sleeps `ms` before answering",
        Answer("decrypt with ms > ~2500 (parent's enclave read budget)", 504, "EnclaveTimeout"),
        Answer("create with ms > 3000 (API's KMS read timeout, 2 attempts)", 502, "KeyGenerationFailed"),
        Answer("any route with ms well below those budgets", 200),
        ms="milliseconds of latency (required)",
        operation="only this KMS operation (default: every operation)",
    )

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        ms = _number(params, "ms", None, 1, 60_000)
        operation = _text(params, "operation")
        hooks = _running(self.services().kms_hooks, "kms-front")
        hooks.clear("latency")
        hooks.latency(ms / 1000, operation)
        return {"ms": ms, "operation": operation}

    def disable(self) -> dict[str, Any]:
        _running(self.services().kms_hooks, "kms-front").clear("latency")
        return {}


class DynamoDbConflict(Fault):
    spec = _spec(
        "dynamodb-conflict",
        "the DynamoDB proxy cancels matching TransactWriteItems with TransactionConflict "
        "(mode=conflict) or deletes the vault item before forwarding them (mode=delete-race)",
        Answer("create/update/delete, mode=conflict", 409, "TransactionCancelled"),
        Answer("decrypt with target=all (its audit write is cancelled)", 409, "TransactionCancelled"),
        Answer("update/delete, mode=delete-race", 404, "VaultNotFound"),
        mode="conflict or delete-race (default conflict)",
        target="vault (writes that touch a vault item) or all (audit-only writes too)",
        actions="comma-separated Put,Update,Delete,ConditionCheck (default Put,Update,Delete)",
        count="transactions to hit (default 100000: on until switched off)",
    )
    #: The proxy's slot this fault uses (see :class:`emulator.faults.hooks.WriteFault`).
    slot: ClassVar[str] = "write"

    def write_fault(self, params: Mapping[str, Any]) -> WriteFault:
        actions = params.get("actions", "Put,Update,Delete")
        names = actions.split(",") if isinstance(actions, str) else list(actions)
        default_mode = "slow-commit" if self.slot == "reply" else "conflict"
        mode = _text(params, "mode") or default_mode
        if (mode == "slow-commit") != (self.slot == "reply"):
            raise FaultError(f"{self.spec.name} does not take mode={mode}")
        target: str = _text(params, "target") or "vault"
        try:
            return WriteFault(
                mode=_checked_mode(mode),
                target=_checked_target(target),
                actions=tuple(name.strip() for name in names if name.strip()),
                count=int(_number(params, "count", MAX_COUNT, 1, MAX_COUNT)),
                delay_ms=int(_number(params, "ms", 1500, 1, MAX_DELAY_MS)),
            )
        except ValueError as exc:
            raise FaultError(str(exc)) from None

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        fault = self.write_fault(params)
        proxy = _running(self.services().dynamodb_proxy, "dynamodb-proxy")
        proxy.arm(fault)
        return dict(proxy.armed().get(self.slot, {}))

    def disable(self) -> dict[str, Any]:
        proxy = _running(self.services().dynamodb_proxy, "dynamodb-proxy")
        proxy.disarm(self.slot)
        return {"counters": dict(proxy.counters)}


def _checked_mode(mode: str) -> Mode:
    for known in MODES:
        if mode == known:
            return known
    raise FaultError(f"mode must be one of {', '.join(MODES)}")


def _checked_target(target: str) -> Target:
    for known in TARGETS:
        if target == known:
            return known
    raise FaultError(f"target must be one of {', '.join(TARGETS)}")


class DynamoDbSlowCommit(DynamoDbConflict):
    spec = _spec(
        "dynamodb-slow-commit",
        "the DynamoDB proxy commits matching TransactWriteItems but holds the answer `ms` "
        "(beyond the API's 1 s read timeout); the API's retry carries the same ClientRequestToken "
        "and gets DynamoDB's idempotent answer",
        Answer("create/update/delete/decrypt (one write, one audit record)", 200),
        ms="milliseconds to hold the answer (default 1500)",
        target="vault (writes that touch a vault item) or all (audit-only writes too)",
        actions="comma-separated Put,Update,Delete,ConditionCheck (default Put,Update,Delete)",
        count="transactions to hold (default 100000: on until switched off)",
    )
    slot = "reply"


class ImdsExpiry(Fault):
    spec = _spec(
        "imds-expiry",
        "IMDS issues credentials that expire `lifetime` seconds after issue (and rotates now); "
        "the parent re-reads IMDS once its cached credential is within 60 s of expiry",
        Answer("decrypt", 200),
        lifetime="credential lifetime in seconds (default 2)",
    )

    def __init__(self, host: FaultHost) -> None:
        super().__init__(host)
        self.original: timedelta | None = None

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        lifetime = _number(params, "lifetime", 2, 1, 21600)
        server = _running(self.services().imds, "imds")
        if self.original is None:
            self.original = server.credential_lifetime
        server.credential_lifetime = timedelta(seconds=lifetime)
        server.rotate()
        return {"lifetime_seconds": lifetime}

    def disable(self) -> dict[str, Any]:
        server = _running(self.services().imds, "imds")
        if self.original is not None:
            server.credential_lifetime = self.original
            self.original = None
        server.rotate()
        return {"lifetime_seconds": server.credential_lifetime.total_seconds()}


class ImdsOutage(Fault):
    spec = _spec(
        "imds-outage",
        "IMDS answers every request with `status` (default 500), or answers after `delay` seconds",
        Answer("decrypt while the parent's cached credential is unexpired", 200),
        Answer("decrypt once it has expired", 502, "ParentError"),
        status="HTTP status of the failures (default 500)",
        delay="seconds before each answer instead of failing (the parent's IMDS timeout is 1 s)",
    )

    def enable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        hooks = _running(self.services().imds, "imds").faults
        hooks.clear("latency", "failure")
        if "delay" in params:
            delay = _number(params, "delay", None, 0.01, 30)
            hooks.latency(delay)
            return {"delay_seconds": delay}
        status = int(_number(params, "status", 500, 400, 599))
        hooks.fail(IMDS_UNTIL_OFF, status)
        return {"status": status}

    def disable(self) -> dict[str, Any]:
        _running(self.services().imds, "imds").faults.clear("latency", "failure")
        return {}


#: The catalogue: every fault by name, each with its own spec.
CATALOGUE: dict[str, type[Fault]] = {
    kind.spec.name: kind
    for kind in (
        EnclaveKill,
        EnclaveRestart,
        ParentDown,
        ParentFreeze,
        KmsThrottle,
        KmsLatency,
        DynamoDbConflict,
        DynamoDbSlowCommit,
        ImdsExpiry,
        ImdsOutage,
    )
}


def describe(spec: FaultSpec) -> str:
    """Several lines for ``vault-emulator fault list``."""
    lines = [f"{spec.name}{' (one-shot)' if spec.one_shot else ''}", f"    how: {spec.injection}"]
    for answer in spec.answers:
        code = f" {answer.code}" if answer.code else ""
        lines.append(f"    API: {answer.route} -> {answer.status}{code}")
    for name, meaning in spec.params.items():
        lines.append(f"    {name}=: {meaning}")
    return "\n".join(lines)


# -- the client ------------------------------------------------------------------------------


class FaultController:
    """Switches faults of the emulator whose state is ``target`` (its state, or its layout)."""

    def __init__(self, target: EmulatorState | StateLayout, *, timeout: float = CONTROL_TIMEOUT) -> None:
        self.layout = target if isinstance(target, StateLayout) else target.layout
        self.timeout = timeout

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = control_request(self.layout, request, timeout=self.timeout)
        if not reply.get("ok"):
            raise FaultError(str(reply.get("error") or reply))
        return reply

    def _fault(self, action: str, name: str | None = None, params: Mapping[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"op": "fault", "action": action}
        if name is not None:
            if name not in CATALOGUE:
                raise FaultError(f"unknown fault {name!r}; known: {', '.join(CATALOGUE)}")
            request["name"] = name
        if params:
            request["params"] = dict(params)
        return self._request(request)["result"]

    def enable(self, name: str, **params: Any) -> dict[str, Any]:
        """Switch ``name`` on (a one-shot fault happens now); returns what the daemon did."""
        result: dict[str, Any] = self._fault("enable", name, params)
        return result

    def disable(self, name: str) -> dict[str, Any]:
        """Switch ``name`` off and undo it (relaunch, restart, resume)."""
        result: dict[str, Any] = self._fault("disable", name)
        return result

    def clear(self) -> dict[str, Any]:
        """Switch every active fault off, most recent first."""
        result: dict[str, Any] = self._fault("clear")
        return result

    def active(self) -> dict[str, dict[str, Any]]:
        """The faults that are on, with their parameters."""
        return dict(self._fault("list")["active"])

    @contextlib.contextmanager
    def injected(self, name: str, **params: Any) -> Iterator[dict[str, Any]]:
        """``name`` is on inside the block and off after it, whatever the block raised."""
        result = self.enable(name, **params)
        try:
            yield result
        finally:
            if not CATALOGUE[name].spec.one_shot:
                self.disable(name)

    def status(self) -> EmulatorState:
        """The daemon's live view of its components."""
        return EmulatorState.from_json(self._request({"op": "status"})["state"])

    def pids(self) -> dict[str, list[int]]:
        """Live pids per component (the daemon's own for servers inside it)."""
        return {component.name: list(component.pids) for component in self.status().components}

    def health(self) -> dict[str, bool]:
        return {component.name: component.healthy for component in self.status().components}

    def kill_enclave_mid_decrypt(
        self, call: Callable[[], T], *, hold_ms: int = 1500, wait: float = 5.0
    ) -> Outcome[T]:
        """Run ``call`` (which must decrypt) on a thread and kill the enclave while it is in flight.

        The enclave's KMS Decrypt is held at the KMS front for ``hold_ms`` so the request
        is surely inside the enclave when it dies; the enclave stays down until
        ``disable("enclave-kill")``. Returns what ``call`` returned or raised.
        """
        outcome: Outcome[T] = Outcome()
        worker = threading.Thread(target=outcome.capture, args=(call,), name="decrypt-in-flight", daemon=True)
        self.enable("kms-latency", ms=hold_ms, operation="Decrypt")
        try:
            worker.start()
            outcome.kill = self.enable("enclave-kill", in_flight=True, wait=wait)
        finally:
            self.disable("kms-latency")
            worker.join(timeout=wait + hold_ms / 1000 + 30)
        return outcome


@dataclass
class Outcome(Generic[T]):
    """What a call run on another thread returned or raised, and how long it took."""

    value: T | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    kill: dict[str, Any] = field(default_factory=dict)

    def capture(self, call: Callable[[], T]) -> None:
        began = time.monotonic()
        try:
            self.value = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who asserts on it
            self.error = exc
        finally:
            self.seconds = time.monotonic() - began
