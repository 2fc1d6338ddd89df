"""Faults a running emulator can be put through, and the client that switches them.

Every fault is switched on and off at run time through the daemon's control socket
(``{"op": "fault", ...}``, served by :mod:`emulator.faults.injector`), without
restarting the components it does not touch. :data:`CATALOGUE` says how each one is
injected and what the API must answer while it is on; the end-to-end tests in
``tests/e2e/faults`` hold the API to those answers.

From Python::

    faults = FaultController(state)           # an EmulatorState, or the state directory
    with faults.injected("kms-throttle", operation="Decrypt"):
        ...                                    # decrypts now fail with a stable 5xx
    faults.enable("parent-down"); faults.disable("parent-down")

From the shell: ``vault-emulator fault list``, ``vault-emulator fault NAME on k=v ...``,
``vault-emulator fault NAME off``, ``vault-emulator fault clear``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from emulator.daemon.config import StateLayout
from emulator.daemon.state import EmulatorState

T = TypeVar("T")
#: Long enough for a relaunch of the enclave (a container build can take a while).
CONTROL_TIMEOUT = 300.0


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


CATALOGUE: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "enclave-kill",
            "SIGKILL the enclave program inside its sandbox, optionally once a KMS Decrypt of the "
            "enclave is in flight (held at the KMS front by kms-latency); off: relaunch the measured image",
            Answer("decrypt", 503, "EnclaveUnavailable"),
            Answer("create/get/update/delete", 200),
            in_flight="wait for a Decrypt in flight at the KMS front before killing (default false)",
            wait="seconds to wait for it (default 5)",
        ),
        _spec(
            "enclave-restart",
            "relaunch the enclave from the measured image (stop, start, wait for its socket)",
            Answer("decrypt while restarting", 503, "EnclaveUnavailable"),
            Answer("decrypt afterwards", 200),
            one_shot=True,
        ),
        _spec(
            "parent-down",
            "stop the parent process (SIGTERM, or SIGKILL with hard=true); off: start it on the same port",
            Answer("decrypt", 502, "ParentUnreachable"),
            Answer("create/get/update/delete", 200),
            hard="SIGKILL instead of a graceful stop (default false)",
        ),
        _spec(
            "parent-freeze",
            "SIGSTOP the parent (connections are accepted, never answered); off: SIGCONT",
            Answer("decrypt (after the API's 5 s parent timeout)", 504, "ParentTimeout"),
        ),
        _spec(
            "kms-throttle",
            "the KMS front answers ThrottlingException to the next `count` requests",
            Answer("create (2 attempts throttled)", 502, "KeyGenerationFailed"),
            Answer(
                "decrypt (enclave's retries end inside the parent's 2.5 s read budget)",
                502,
                "EnclaveDecryptFailed",
            ),
            Answer("decrypt (enclave's retry back-off outlasts that budget)", 503, "EnclaveUnavailable"),
            operation="Decrypt or GenerateDataKeyPairWithoutPlaintext (default: every operation)",
            count="requests to throttle (default 100000: on until switched off)",
        ),
        _spec(
            "kms-latency",
            "the KMS front sleeps `ms` before answering",
            Answer("decrypt with ms > ~2500 (parent's enclave read budget)", 503, "EnclaveUnavailable"),
            Answer("create with ms > 3000 (API's KMS read timeout, 2 attempts)", 502, "KeyGenerationFailed"),
            Answer("any route with ms well below those budgets", 200),
            ms="milliseconds of latency (required)",
            operation="only this KMS operation (default: every operation)",
        ),
        _spec(
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
        ),
        _spec(
            "dynamodb-slow-commit",
            "the DynamoDB proxy commits matching TransactWriteItems but holds the answer `ms` "
            "(beyond the API's 1 s read timeout); the API's retry carries the same ClientRequestToken "
            "and gets DynamoDB's idempotent answer",
            Answer("create/update/delete/decrypt (one write, one audit record)", 200),
            ms="milliseconds to hold the answer (default 1500)",
            target="vault (writes that touch a vault item) or all (audit-only writes too)",
            actions="comma-separated Put,Update,Delete,ConditionCheck (default Put,Update,Delete)",
            count="transactions to hold (default 100000: on until switched off)",
        ),
        _spec(
            "imds-expiry",
            "IMDS issues credentials that expire `lifetime` seconds after issue (and rotates now); "
            "the parent re-reads IMDS once its cached credential is within 60 s of expiry",
            Answer("decrypt", 200),
            lifetime="credential lifetime in seconds (default 2)",
        ),
        _spec(
            "imds-outage",
            "IMDS answers every request with `status` (default 500), or answers after `delay` seconds",
            Answer("decrypt while the parent's cached credential is unexpired", 200),
            Answer("decrypt once it has expired", 502, "ParentError"),
            status="HTTP status of the failures (default 500)",
            delay="seconds before each answer instead of failing (the parent's IMDS timeout is 1 s)",
        ),
    )
}


class FaultError(RuntimeError):
    """The daemon refused or failed a fault operation; ``str()`` says why."""


def _layout(target: EmulatorState | StateLayout | Path | str) -> StateLayout:
    if isinstance(target, StateLayout):
        return target
    if isinstance(target, EmulatorState):
        return StateLayout(Path(target.state_dir))
    return StateLayout(Path(target).absolute())


class FaultController:
    """Switches faults of the emulator whose state is ``target`` (state, layout or state dir)."""

    def __init__(
        self, target: EmulatorState | StateLayout | Path | str, *, timeout: float = CONTROL_TIMEOUT
    ) -> None:
        self.layout = _layout(target)
        self.timeout = timeout

    def _request(self, request: dict[str, Any]) -> Any:
        from emulator.daemon.supervisor import control_request

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
            if not CATALOGUE[name].one_shot:
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


def describe(spec: FaultSpec) -> str:
    """Several lines for ``vault-emulator fault list``."""
    lines = [f"{spec.name}{' (one-shot)' if spec.one_shot else ''}", f"    how: {spec.injection}"]
    for answer in spec.answers:
        code = f" {answer.code}" if answer.code else ""
        lines.append(f"    API: {answer.route} -> {answer.status}{code}")
    for name, meaning in spec.params.items():
        lines.append(f"    {name}=: {meaning}")
    return "\n".join(lines)
