"""The Lambda execution environment: the API handler in its own process, run from its artifact.

The gateway starts the function's process (:mod:`emulator.host.bootstrap` in Lambda mode)
with an isolated interpreter whose ``sys.path`` is the API tier's package and its
dependency set only, as Lambda's ``/var/task`` and layer. The process imports the handler
(the cold start), reports ready, receives the function's environment, then one invocation
at a time over a socket pair. A process that dies is replaced at the next invocation, as
Lambda replaces a crashed execution environment.

One such process is one execution environment (:class:`LambdaRuntime`). The function
scales as Lambda does with :class:`ExecutionEnvironments`: up to ``concurrency``
environments, each started on demand when every other one is busy, initialised once (its
cold start is the ``Init Duration`` of its first invocation) and reused while warm. Beyond
that limit an invocation waits for a free environment until its deadline, since the limit
stands for this machine's cores, not for Lambda; with a reserved concurrency the function
itself is limited, and Lambda throttles what exceeds it (:class:`FunctionThrottled`).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.host.bootstrap import receive, send

#: Bound on the cold start (imports of the handler, Powertools, boto3).
INIT_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0


class RuntimeInitError(RuntimeError):
    """The function's process could not import its handler (the message names tier and module)."""


class RuntimeExited(RuntimeError):
    """The function's process ended during an invocation."""


class FunctionThrottled(RuntimeError):
    """Every environment the function's reserved concurrency allows is busy: Lambda refuses (429)."""

    #: Lambda's ``TooManyRequestsException`` reason for a function over its reserved concurrency.
    reason = "ReservedFunctionConcurrentInvocationLimitExceeded"


class NoFreeEnvironment(TimeoutError):
    """Every execution environment stayed busy until the invocation's deadline."""


class HandlerError(RuntimeError):
    """The handler raised; only the exception's type crosses the process boundary."""

    def __init__(self, error_type: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type


@dataclass(frozen=True)
class InvocationUsage:
    """What the function's process measured of one invocation, for Lambda's REPORT line."""

    seconds: float
    cpu_seconds: float
    max_memory_mb: int
    #: The environment's cold start, on the first invocation it serves (Lambda's ``Init Duration``).
    init_seconds: float | None = None


class LambdaRuntime:
    """A Lambda handler in a separate process: ``runtime(event, context)`` invokes it."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        #: The bootstrap's command line without ``--channel`` (added per process).
        self.command = list(command)
        self.env = dict(env)
        self.environment: dict[str, str] = {}
        self.last_usage: InvocationUsage | None = None
        #: How long the last start took, from the process's launch to its handler's import.
        self.init_seconds: float | None = None
        #: Set by a start, cleared by the invocation that reports it.
        self._init_unreported = False
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the process and wait for its cold start; :class:`RuntimeInitError` if it fails."""
        ours, theirs = socket.socketpair()
        argv = list(self.command)
        # The channel goes before the "--" that ends the bootstrap's own options.
        split = argv.index("--") if "--" in argv else len(argv)
        argv[split:split] = ["--channel", str(theirs.fileno())]
        began = time.perf_counter()
        try:
            self._process = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),)
            )
        finally:
            theirs.close()
        ours.settimeout(INIT_TIMEOUT)
        self._channel = ours
        try:
            message = receive(ours)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeInitError(
                f"the function's process did not start within {INIT_TIMEOUT:.0f} s"
            ) from exc
        if message is None or message.get("type") != "ready":
            self.stop()
            detail = message.get("message") if message else "it exited during its cold start"
            raise RuntimeInitError(str(detail))
        self.init_seconds, self._init_unreported = time.perf_counter() - began, True
        ours.settimeout(None)
        if self.environment:
            self._configure(self.environment)

    def configure(self, environment: Mapping[str, str]) -> None:
        """Hand the function its environment (kept for any replacement process)."""
        self.environment = dict(environment)
        with self._lock:
            self._configure(self.environment)

    def _configure(self, environment: dict[str, str]) -> None:
        channel = self._require_channel()
        send(channel, {"type": "environment", "values": environment})
        reply = receive(channel)
        if reply is None or reply.get("type") != "configured":
            raise RuntimeExited("the function's process ended while receiving its environment")

    def _require_channel(self) -> socket.socket:
        if self._channel is None:
            raise RuntimeExited("the function's process is not running")
        return self._channel

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self._lock:
            self.last_usage = None
            if self._process is None or self._process.poll() is not None:
                self.stop()
                self.start()
            channel = self._require_channel()
            send(
                channel,
                {
                    "type": "invoke",
                    "event": event,
                    "remaining_ms": context.get_remaining_time_in_millis(),
                    "context": {
                        "function_name": context.function_name,
                        "function_version": context.function_version,
                        "invoked_function_arn": context.invoked_function_arn,
                        "memory_limit_in_mb": context.memory_limit_in_mb,
                        "aws_request_id": context.aws_request_id,
                        "log_group_name": context.log_group_name,
                        "log_stream_name": context.log_stream_name,
                    },
                },
            )
            reply = receive(channel)
            if reply is None:
                self.stop()
                raise RuntimeExited("the function's process ended during the invocation")
            usage = reply.get("usage") or {}
            init, self._init_unreported = (self.init_seconds if self._init_unreported else None), False
            self.last_usage = InvocationUsage(
                float(usage.get("seconds", 0.0)),
                float(usage.get("cpu_seconds", 0.0)),
                int(usage.get("max_memory_mb", 0)),
                init,
            )
            if reply.get("type") == "error":
                raise HandlerError(str(reply.get("error")))
            return reply.get("result")

    def release(self) -> None:
        """Close the channel: the environment's process leaves its loop and exits on its own."""
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def stop(self) -> None:
        self.release()
        process, self._process = self._process, None
        if process is None:
            return
        # Closing the channel ends its loop; a process stuck in the handler is terminated.
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_TIMEOUT)


class Environment(Protocol):
    """One execution environment: what :class:`ExecutionEnvironments` needs of a :class:`LambdaRuntime`."""

    last_usage: InvocationUsage | None

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None: ...

    def configure(self, environment: Mapping[str, str]) -> None: ...

    def __call__(self, event: dict[str, Any], context: Any) -> Any: ...

    def release(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Invocation:
    """What one invocation came to: the handler's result, or what went wrong, and its usage."""

    result: Any = None
    #: The handler raised (:class:`HandlerError`), or its environment failed to start or died.
    error: BaseException | None = None
    #: ``None`` when no handler ran to the end (no ``REPORT`` numbers from the function).
    usage: InvocationUsage | None = None


class ExecutionEnvironments:
    """Up to ``concurrency`` execution environments of one function, each serving one invocation at a time.

    The first starts in :meth:`start` (the gateway's cold start); others start when an
    invocation finds every existing one busy. ``reserved`` (at most ``concurrency``) is the
    function's reserved concurrency: an invocation beyond it is throttled at once instead of
    waiting.
    """

    def __init__(
        self, factory: Callable[[], Environment], *, concurrency: int, reserved: int | None = None
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"the Lambda concurrency must be at least 1, not {concurrency}")
        if reserved is not None and not 1 <= reserved <= concurrency:
            raise ValueError(f"the reserved concurrency must be within 1..{concurrency}, not {reserved}")
        self.factory = factory
        self.concurrency = concurrency
        self.reserved = reserved
        self.limit = reserved if reserved is not None else concurrency
        self._changed = threading.Condition()
        self._all: list[Environment] = []
        #: Warm environments, the most recently used last (reused first, as Lambda tends to).
        self._idle: list[Environment] = []
        self._starting = 0
        self._environment: dict[str, str] | None = None
        self._stopped = False

    @property
    def started(self) -> int:
        with self._changed:
            return len(self._all)

    @property
    def busy(self) -> int:
        with self._changed:
            return len(self._all) - len(self._idle)

    def pids(self) -> list[int]:
        with self._changed:
            return [pid for env in self._all if (pid := env.pid) is not None]

    def start(self) -> None:
        """Start the first environment; :class:`RuntimeInitError` if its handler cannot be imported."""
        environment = self._create()
        with self._changed:
            self._all.append(environment)
            self._idle.append(environment)
            self._changed.notify()

    def configure(self, environment: Mapping[str, str]) -> None:
        """The function's environment, for the environments running now and every later one."""
        with self._changed:
            self._environment = dict(environment)
            # Called before the gateway serves: every environment is idle.
            idle = list(self._idle)
        for each in idle:
            each.configure(environment)

    def _create(self) -> Environment:
        environment = self.factory()
        environment.start()
        with self._changed:
            values = self._environment
        if values is not None:
            environment.configure(values)
        return environment

    def _acquire(self, deadline: float) -> Environment | None:
        """A warm environment, or ``None``: the caller starts a new one (counted in ``_starting``)."""
        with self._changed:
            while True:
                if self._stopped:
                    raise RuntimeExited("the function is stopping")
                # Past its deadline the caller already got its 504: an environment freed just
                # now must not run an invocation nobody waits for.
                if time.monotonic() >= deadline:
                    raise NoFreeEnvironment(f"all {self.limit} execution environments stayed busy")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._starting < self.limit:
                    self._starting += 1
                    return None
                if self.reserved is not None:
                    raise FunctionThrottled("Rate Exceeded.")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoFreeEnvironment(f"all {self.limit} execution environments stayed busy")
                self._changed.wait(remaining)

    def invoke(self, event: dict[str, Any], context: Any, deadline: float) -> Invocation:
        """Run one invocation in a free environment; :class:`FunctionThrottled` or
        :class:`NoFreeEnvironment` when none is free (nothing ran)."""
        acquired = self._acquire(deadline)
        if acquired is None:
            try:
                acquired = self._create()
            except BaseException as exc:  # noqa: BLE001 - a failed cold start is the invocation's error
                with self._changed:
                    self._starting -= 1
                    self._changed.notify()
                return Invocation(error=exc)
            with self._changed:
                self._starting -= 1
                self._all.append(acquired)
        environment = acquired
        # The usage is read before the environment is released: its next invocation resets it.
        try:
            result = environment(event, context)
            return Invocation(result=result, usage=environment.last_usage)
        except BaseException as exc:  # noqa: BLE001 - a Lambda that raises, whatever it raises
            usage = environment.last_usage if isinstance(exc, HandlerError) else None
            return Invocation(error=exc, usage=usage)
        finally:
            self._release(environment)

    def _release(self, environment: Environment) -> None:
        # A process that died stays in the pool: its next invocation starts a replacement.
        with self._changed:
            stopped = self._stopped
            if not stopped:
                self._idle.append(environment)
                self._changed.notify()
        if stopped:
            environment.stop()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            environments, self._all, self._idle = list(self._all), [], []
            self._changed.notify_all()
        # Every process is told first, so they exit side by side rather than one after another.
        for environment in environments:
            environment.release()
        for environment in environments:
            environment.stop()
