"""The fault hooks every emulated service exposes, and what the injector may ask of product processes.

A service that can be put through faults owns one :class:`FaultHooks` (its public
``faults`` attribute) and asks it, on every request, :meth:`FaultHooks.before` with the
request's operation name. The hook sleeps any latency that is switched on, counts the
request as in flight while it does, and says whether the request is to be throttled or
failed; the service answers that in its own protocol (KMS ``ThrottlingException``, an
IMDS status line, API Gateway's 429). Hooks are safe to switch while requests are
served. The product processes the daemon runs (the parent, the enclave's sandbox) are
switched through :class:`ParentControl` and :class:`EnclaveControl`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from vault.infra.table import KEY_SEPARATOR, PARTITION_KEY, VAULT_PREFIX

HookKind = Literal["throttle", "latency", "failure"]
HOOK_KINDS: tuple[HookKind, ...] = ("throttle", "latency", "failure")
#: DynamoDB write faults (the DynamoDB proxy's own hook, beside its :class:`FaultHooks`).
Mode = Literal["conflict", "delete-race", "slow-commit"]
Target = Literal["vault", "all"]
MODES: tuple[Mode, ...] = ("conflict", "delete-race", "slow-commit")
TARGETS: tuple[Target, ...] = ("vault", "all")
ACTIONS = ("Put", "Update", "Delete", "ConditionCheck")
#: Upper bound of one armed write fault, so a forgotten one cannot outlive a long test run unseen.
MAX_COUNT = 100_000
MAX_DELAY_MS = 30_000


@dataclass(frozen=True)
class Injected:
    """What a hook decided for one request: throttle it, or fail it with ``status``."""

    kind: Literal["throttle", "failure"]
    operation: str
    #: The HTTP status of an injected failure (a throttle's status is the service's own).
    status: int = 0


@dataclass(frozen=True)
class Budget:
    """One armed throttle or failure: the next ``remaining`` requests of ``operation`` (``None``: any)."""

    operation: str | None
    remaining: int
    status: int = 0

    def matches(self, operation: str) -> bool:
        return self.operation is None or self.operation == operation


@dataclass(frozen=True)
class HookState:
    """What is switched on, for status and tests."""

    throttles: tuple[Budget, ...]
    failures: tuple[Budget, ...]
    #: Seconds of latency per operation (``None``: every operation).
    latency: dict[str | None, float]


class FaultHooks:
    """Per-operation throttle, latency and failure of one service, with a count of requests in flight.

    A request is in flight while it is inside :meth:`before` (held by a latency):
    waiting for one is how a fault knows a request has reached the service.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._throttles: list[Budget] = []
        self._failures: list[Budget] = []
        self._latency: dict[str | None, float] = {}
        self._in_flight: Counter[str] = Counter()

    # -- switches ---------------------------------------------------------------------

    def throttle(self, count: int = 1, operation: str | None = None) -> None:
        """Throttle the next ``count`` requests (of ``operation`` only, if named)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._changed:
            self._throttles.append(Budget(operation, count))

    def fail(self, count: int = 1, status: int = 500, operation: str | None = None) -> None:
        """Fail the next ``count`` requests (of ``operation`` only, if named) with ``status``."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be within 400..599")
        with self._changed:
            self._failures.append(Budget(operation, count, status))

    def latency(self, seconds: float, operation: str | None = None) -> None:
        """Hold every request (of ``operation`` only, if named) ``seconds`` before it is answered."""
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._changed:
            if seconds == 0:
                self._latency.pop(operation, None)
            else:
                self._latency[operation] = seconds

    def clear(self, *kinds: HookKind) -> None:
        """Switch off the named kinds of hook (none named: all of them)."""
        unknown = set(kinds) - set(HOOK_KINDS)
        if unknown:
            raise ValueError(f"unknown hook kinds {sorted(unknown)}")
        with self._changed:
            if not kinds or "throttle" in kinds:
                self._throttles.clear()
            if not kinds or "failure" in kinds:
                self._failures.clear()
            if not kinds or "latency" in kinds:
                self._latency.clear()

    def state(self) -> HookState:
        with self._changed:
            return HookState(tuple(self._throttles), tuple(self._failures), dict(self._latency))

    def wait_in_flight(self, operation: str, timeout: float) -> bool:
        """True once a request of ``operation`` is held inside :meth:`before` (within ``timeout``)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight[operation] > 0, timeout=timeout)

    # -- called by the service, once per request ---------------------------------------

    def before(self, operation: str) -> Injected | None:
        """Apply the latency, then say whether this request is throttled or failed."""
        with self._changed:
            delay = self._latency.get(None, 0.0) + self._latency.get(operation, 0.0)
            self._in_flight[operation] += 1
            self._changed.notify_all()
        try:
            if delay > 0:
                time.sleep(delay)
            with self._changed:
                if self._take(self._throttles, operation) is not None:
                    return Injected("throttle", operation)
                failure = self._take(self._failures, operation)
                if failure is not None:
                    return Injected("failure", operation, failure.status)
            return None
        finally:
            with self._changed:
                self._in_flight[operation] -= 1

    @staticmethod
    def _take(budgets: list[Budget], operation: str) -> Budget | None:
        for index, budget in enumerate(budgets):
            if budget.matches(operation):
                if budget.remaining <= 1:
                    del budgets[index]
                else:
                    budgets[index] = Budget(budget.operation, budget.remaining - 1, budget.status)
                return budget
        return None


@dataclass(frozen=True)
class WriteFault:
    """A write fault the DynamoDB proxy can arm: what it does to which ``TransactWriteItems``."""

    mode: Mode = "conflict"
    target: Target = "vault"
    actions: tuple[str, ...] = ("Put", "Update", "Delete")
    count: int = MAX_COUNT
    #: How long ``slow-commit`` holds the answer.
    delay_ms: int = 1500

    @property
    def slot(self) -> str:
        """Faults on the answer and faults on the write can be armed together."""
        return "reply" if self.mode == "slow-commit" else "write"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        unknown = set(self.actions) - set(ACTIONS)
        if unknown or not self.actions:
            raise ValueError(f"actions must be a non-empty subset of {', '.join(ACTIONS)}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be within 1..{MAX_COUNT}")
        if not 1 <= self.delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be within 1..{MAX_DELAY_MS}")

    def match(self, items: list[dict[str, Any]]) -> int | None:
        """Index of the action this fault hits in a ``TransactItems`` list, or ``None``."""
        for index, entry in enumerate(items):
            kind = next((k for k in ACTIONS if k in entry), None)
            if kind is None or kind not in self.actions:
                continue
            if self.target == "all" or _is_vault_action(entry[kind]):
                return index
        return None


def _is_vault_action(action: dict[str, Any]) -> bool:
    key = action.get("Item") or action.get("Key") or {}
    partition = key.get(PARTITION_KEY, {}).get("S", "")
    return isinstance(partition, str) and partition.startswith(VAULT_PREFIX + KEY_SEPARATOR)


class FaultTarget(Protocol):
    """A service with fault hooks (KMS front, DynamoDB proxy, IMDS, API gateway, NSM)."""

    @property
    def faults(self) -> FaultHooks: ...


class WriteFaultTarget(Protocol):
    """The DynamoDB proxy's write faults: one armed fault per slot (``write``, ``reply``)."""

    counters: dict[str, int]

    def arm(self, fault: WriteFault) -> None: ...

    def disarm(self, slot: str | None = None) -> None: ...

    def armed(self) -> dict[str, dict[str, Any]]: ...


class ParentControl(Protocol):
    """What faults do to the parent process: freeze, thaw, take down, bring back on its port."""

    @property
    def port(self) -> int: ...

    def freeze(self) -> int:
        """SIGSTOP the parent's process group; its pid (raises ``ProcessError`` when not running)."""
        ...

    def thaw(self) -> int:
        """SIGCONT the parent's process group; its pid."""
        ...

    def take_down(self, *, hard: bool) -> int:
        """Stop the parent (SIGKILL first when ``hard``) and reap it; the pid it had."""
        ...

    def resume(self) -> None:
        """Start the parent again on the port it had."""
        ...

    def pids(self) -> list[int]: ...


class EnclaveControl(Protocol):
    """What faults do to the enclave: kill its program inside the sandbox, relaunch it."""

    def running(self) -> bool: ...

    def kill_program(self, wait: float) -> list[int]:
        """SIGKILL the enclave program and wait up to ``wait`` s for the sandbox to end; the pids killed."""
        ...

    def pids(self) -> list[int]: ...


class ProcessError(RuntimeError):
    """A product process a fault acts on is not running."""
