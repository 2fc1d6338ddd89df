"""The daemon's side of fault injection: one switch per entry of :data:`emulator.faults.catalogue.CATALOGUE`.

The supervisor hands ``{"op": "fault", ...}`` control requests to :class:`FaultInjector`,
which acts on the running components directly: the KMS front's and IMDS's fault hooks,
the DynamoDB proxy, the enclave's sandbox and the parent's process. Requests arrive one
at a time (the control socket is served by one thread), so a switch never races another.
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any, Protocol

from emulator.aws.kms.front import Faults
from emulator.daemon.components.base import Component, Context
from emulator.faults.catalogue import CATALOGUE, FaultError, FaultSpec
from emulator.host import procfs

#: Bound of "on until switched off" counters (throttled requests, IMDS failures).
UNTIL_OFF = 100_000
IMDS_UNTIL_OFF = 10_000
#: How long a killed enclave may take to be reaped by its sandbox.
EXIT_WAIT = 5.0
MAX_WAIT = 30.0
ENCLAVE_PROGRAM = "vault.enclave"


class FaultHost(Protocol):
    """What the injector needs from the supervisor."""

    by_name: dict[str, Component]
    context: Context

    def relaunch_enclave(self, overrides: dict[str, str] | None) -> dict[str, Any]: ...

    def publish(self, live: bool = False) -> None: ...


# -- parameters ------------------------------------------------------------------------------


def _number(params: dict[str, Any], name: str, default: float | None, low: float, high: float) -> float:
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


def _flag(params: dict[str, Any], name: str) -> bool:
    raw = params.get(name, False)
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("1", "true", "yes", "on"):
        return True
    if str(raw).lower() in ("0", "false", "no", "off", ""):
        return False
    raise FaultError(f"{name}= must be true or false")


def _text(params: dict[str, Any], name: str) -> str | None:
    raw = params.get(name)
    return None if raw in (None, "") else str(raw)


# -- hooks installed into the KMS front ------------------------------------------------------


class KmsFaultHooks(Faults):
    """The KMS front's :class:`Faults`, plus per-operation latency and a count of requests in flight.

    Requests in flight are those inside :meth:`before` (held by a latency): waiting for
    one is how ``enclave-kill`` knows a decrypt is inside the enclave.
    """

    def __init__(self) -> None:
        super().__init__()
        self.operation_delays: dict[str, float] = {}
        self._changed = threading.Condition()
        self._in_flight: Counter[str] = Counter()

    def before(self, operation: str) -> None:
        with self._changed:
            self._in_flight[operation] += 1
            self._changed.notify_all()
        try:
            delay = self.operation_delays.get(operation, 0.0)
            if delay > 0:
                time.sleep(delay)
            super().before(operation)
        finally:
            with self._changed:
                self._in_flight[operation] -= 1

    def wait_in_flight(self, operation: str, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight[operation] > 0, timeout=timeout)

    def clear_throttles(self) -> None:
        # The base class keeps throttles and latency together; only the throttles go here.
        with self._lock:
            self._throttles.clear()

    def clear_latency(self) -> None:
        self.delay_ms = 0
        self.operation_delays.clear()


def install_kms_hooks(front: Any) -> KmsFaultHooks:
    """Give ``front`` the extended hooks (once), keeping whatever its own hooks held."""
    current = front.faults
    if isinstance(current, KmsFaultHooks):
        return current
    hooks = KmsFaultHooks()
    hooks.delay_ms = current.delay_ms
    with current._lock:
        hooks._throttles = list(current._throttles)
    # The front reads ``faults`` on every request, so the swap takes effect at once.
    front.faults = hooks
    return hooks


# -- processes -------------------------------------------------------------------------------


def enclave_program(roots: list[int]) -> list[int]:
    """The enclave program's process(es) below the sandbox: leaves of the tree running the module.

    The sandbox's own processes (``unshare``, the namespace's init) carry the program's
    argv too, so only processes without children in the tree count.
    """
    links = procfs.children_map()
    pids = procfs.tree(roots, links)
    leaves = [pid for pid in pids if not any(child in pids for child in links.get(pid, []))]
    return [pid for pid in leaves if ENCLAVE_PROGRAM in procfs.cmdline(pid)] or pids


# -- the faults ------------------------------------------------------------------------------


class Fault(abc.ABC):
    spec: FaultSpec
    #: Faults this one ends when switched on (released first, then no longer listed as active).
    supersedes: tuple[str, ...] = ()

    def __init__(self, host: FaultHost, name: str) -> None:
        self.host = host
        self.spec = CATALOGUE[name]

    def component(self, name: str) -> Any:
        component = self.host.by_name.get(name)
        if component is None:
            raise FaultError(f"this emulator has no {name}")
        return component

    def objects(self, name: str) -> Any:
        value = self.host.context.objects.get(name)
        if value is None:
            raise FaultError(f"{name} is not running")
        return value

    @abc.abstractmethod
    def enable(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def disable(self) -> dict[str, Any]:
        return {}

    def release(self) -> None:  # noqa: B027 - only faults that would block a shutdown need it
        """Undo whatever would keep the daemon from stopping its components (shutdown)."""


class EnclaveKill(Fault):
    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        enclave = self.component("enclave")
        sandbox = enclave.sandbox
        if sandbox is None or not sandbox.running():
            raise FaultError("the enclave is not running")
        waited = 0.0
        if _flag(params, "in_flight"):
            wait = _number(params, "wait", 5.0, 0.0, MAX_WAIT)
            hooks = install_kms_hooks(self.objects("kms_front"))
            began = time.monotonic()
            if not hooks.wait_in_flight("Decrypt", wait):
                raise FaultError(f"no enclave decrypt reached KMS within {wait:g} s; nothing was killed")
            waited = time.monotonic() - began
        victims = enclave_program(list(sandbox.pids()))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + EXIT_WAIT
        while sandbox.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.host.publish(live=True)
        return {
            "killed": victims,
            "waited_seconds": round(waited, 3),
            "sandbox_exited": not sandbox.running(),
        }

    def disable(self) -> dict[str, Any]:
        began = time.monotonic()
        self.host.relaunch_enclave(None)
        return {
            "enclave_pids": self.component("enclave").pids(),
            "seconds": round(time.monotonic() - began, 3),
        }


class EnclaveRestart(Fault):
    # The relaunch brings a killed enclave back too.
    supersedes = ("enclave-kill",)

    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        enclave = self.component("enclave")
        before = enclave.pids()
        began = time.monotonic()
        self.host.relaunch_enclave(None)
        return {
            "previous_pids": before,
            "enclave_pids": enclave.pids(),
            "seconds": round(time.monotonic() - began, 3),
        }


class ParentDown(Fault):
    # A frozen parent cannot act on SIGTERM; it is continued first.
    supersedes = ("parent-freeze",)

    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        parent = self.component("parent")
        process = parent.process
        if process is None or not process.running():
            raise FaultError("the parent is not running")
        pid = process.pid
        if _flag(params, "hard"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        parent.stop()  # reaps it (and stops it gracefully unless it was killed above)
        self.host.publish(live=True)
        return {"stopped_pid": pid, "port": parent.port}

    def disable(self) -> dict[str, Any]:
        parent = self.component("parent")
        began = time.monotonic()
        parent.resume()
        self.host.publish(live=True)
        return {
            "parent_pids": parent.pids(),
            "port": parent.port,
            "seconds": round(time.monotonic() - began, 3),
        }


class ParentFreeze(Fault):
    def _signal(self, sig: signal.Signals) -> int:
        process = self.component("parent").process
        if process is None or not process.running() or process.pid is None:
            raise FaultError("the parent is not running")
        os.killpg(process.pid, sig)
        return int(process.pid)

    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"frozen_pid": self._signal(signal.SIGSTOP)}

    def disable(self) -> dict[str, Any]:
        return {"resumed_pid": self._signal(signal.SIGCONT)}

    def release(self) -> None:
        # A stopped process ignores SIGTERM until it is continued; the shutdown would wait for SIGKILL.
        with contextlib.suppress(FaultError, OSError):
            self.disable()


class KmsThrottle(Fault):
    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        count = int(_number(params, "count", UNTIL_OFF, 1, UNTIL_OFF))
        operation = _text(params, "operation")
        hooks = install_kms_hooks(self.objects("kms_front"))
        hooks.clear_throttles()
        hooks.throttle(count, operation)
        return {"count": count, "operation": operation}

    def disable(self) -> dict[str, Any]:
        install_kms_hooks(self.objects("kms_front")).clear_throttles()
        return {}


class KmsLatency(Fault):
    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        ms = _number(params, "ms", None, 1, 60_000)
        operation = _text(params, "operation")
        hooks = install_kms_hooks(self.objects("kms_front"))
        hooks.clear_latency()
        if operation is None:
            hooks.delay_ms = int(ms)
        else:
            hooks.operation_delays[operation] = ms / 1000
        return {"ms": ms, "operation": operation}

    def disable(self) -> dict[str, Any]:
        install_kms_hooks(self.objects("kms_front")).clear_latency()
        return {}


class DynamoDbConflict(Fault):
    #: The proxy's slot this fault uses (see :class:`emulator.aws.dynamodb.proxy.WriteFault`).
    slot = "write"

    def write_fault(self, params: dict[str, Any]) -> Any:
        from emulator.aws.dynamodb.proxy import MAX_COUNT, MAX_DELAY_MS, WriteFault

        actions = params.get("actions", "Put,Update,Delete")
        names = actions.split(",") if isinstance(actions, str) else list(actions)
        default_mode = "slow-commit" if self.slot == "reply" else "conflict"
        mode = _text(params, "mode") or default_mode
        if (mode == "slow-commit") != (self.slot == "reply"):
            raise FaultError(f"{self.spec.name} does not take mode={mode}")
        try:
            return WriteFault(
                mode=mode,  # type: ignore[arg-type]
                target=_text(params, "target") or "vault",  # type: ignore[arg-type]
                actions=tuple(name.strip() for name in names if name.strip()),
                count=int(_number(params, "count", MAX_COUNT, 1, MAX_COUNT)),
                delay_ms=int(_number(params, "ms", 1500, 1, MAX_DELAY_MS)),
            )
        except ValueError as exc:
            raise FaultError(str(exc)) from None

    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        fault = self.write_fault(params)
        proxy = self.objects("dynamodb_proxy")
        proxy.arm(fault)
        return dict(proxy.armed().get(self.slot, {}))

    def disable(self) -> dict[str, Any]:
        proxy = self.objects("dynamodb_proxy")
        proxy.disarm(self.slot)
        return {"counters": dict(proxy.counters)}


class DynamoDbSlowCommit(DynamoDbConflict):
    slot = "reply"


class ImdsExpiry(Fault):
    original: timedelta | None = None

    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        lifetime = _number(params, "lifetime", 2, 1, 21600)
        server = self.objects("imds")
        if self.original is None:
            self.original = server.credential_lifetime
        server.credential_lifetime = timedelta(seconds=lifetime)
        server.rotate()
        return {"lifetime_seconds": lifetime}

    def disable(self) -> dict[str, Any]:
        server = self.objects("imds")
        if self.original is not None:
            server.credential_lifetime = self.original
            self.original = None
        server.rotate()
        return {"lifetime_seconds": server.credential_lifetime.total_seconds()}


class ImdsOutage(Fault):
    def enable(self, params: dict[str, Any]) -> dict[str, Any]:
        server = self.objects("imds")
        self._clear(server)
        if "delay" in params:
            server.response_delay = _number(params, "delay", None, 0.01, 30)
            return {"delay_seconds": server.response_delay}
        status = int(_number(params, "status", 500, 400, 599))
        server.fail_next(IMDS_UNTIL_OFF, status)
        return {"status": status}

    def disable(self) -> dict[str, Any]:
        self._clear(self.objects("imds"))
        return {}

    @staticmethod
    def _clear(server: Any) -> None:
        server.response_delay = 0.0
        clear = getattr(server, "clear_failures", None)
        if callable(clear):
            clear()
            return
        # ImdsServer offers fail_next but no way to take it back; its queue is a list under its lock.
        with server._lock:
            server._failures.clear()


FAULTS: dict[str, type[Fault]] = {
    "enclave-kill": EnclaveKill,
    "enclave-restart": EnclaveRestart,
    "parent-down": ParentDown,
    "parent-freeze": ParentFreeze,
    "kms-throttle": KmsThrottle,
    "kms-latency": KmsLatency,
    "dynamodb-conflict": DynamoDbConflict,
    "dynamodb-slow-commit": DynamoDbSlowCommit,
    "imds-expiry": ImdsExpiry,
    "imds-outage": ImdsOutage,
}


class FaultInjector:
    """Answers the ``fault`` control operation: ``list``, ``enable``, ``disable``, ``clear``."""

    def __init__(self, host: FaultHost) -> None:
        self.host = host
        self.faults = {name: kind(host, name) for name, kind in FAULTS.items()}
        #: Active faults and their parameters, in the order they were switched on.
        self.active: dict[str, dict[str, Any]] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        action = request.get("action")
        if action == "list":
            return {"catalogue": sorted(CATALOGUE), "active": dict(self.active)}
        if action == "clear":
            return {"cleared": self.clear()}
        name = request.get("name")
        fault = self.faults.get(str(name))
        if fault is None:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(self.faults)}")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise FaultError("params must be an object")
        unknown = sorted(set(params) - set(fault.spec.params))
        if unknown:
            known = ", ".join(fault.spec.params) or "none"
            raise FaultError(f"{fault.spec.name} has no parameter {', '.join(unknown)} (known: {known})")
        if action == "enable":
            for name in fault.supersedes:
                if name in self.active:
                    self.faults[name].release()
            result = fault.enable(params)
            for name in fault.supersedes:
                self.active.pop(name, None)
            if not fault.spec.one_shot:
                self.active.pop(fault.spec.name, None)
                self.active[fault.spec.name] = dict(params)
            return {"name": fault.spec.name, "result": result, "active": dict(self.active)}
        if action == "disable":
            result = fault.disable() if fault.spec.name in self.active else {}
            self.active.pop(fault.spec.name, None)
            return {"name": fault.spec.name, "result": result, "active": dict(self.active)}
        raise FaultError(f"unknown fault action {action!r}")

    def clear(self) -> list[str]:
        cleared = []
        for name in reversed(list(self.active)):
            self.faults[name].disable()
            self.active.pop(name, None)
            cleared.append(name)
        return cleared

    def release(self) -> None:
        for name in list(self.active):
            self.faults[name].release()
