"""The Lambda execution environment: the API handler in its own process, run from its artifact.

The gateway starts the function's process (:mod:`emulator.host.bootstrap` in Lambda mode)
with an isolated interpreter whose ``sys.path`` is the API tier's package and its
dependency set only, as Lambda's ``/var/task`` and layer. The process imports the handler
(the cold start), reports ready, receives the function's environment, then one invocation
at a time over a socket pair. A process that dies is replaced at the next invocation, as
Lambda replaces a crashed execution environment.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emulator.host.bootstrap import receive, send

#: Bound on the cold start (imports of the handler, Powertools, boto3).
INIT_TIMEOUT = 60.0
STOP_TIMEOUT = 5.0


class RuntimeInitError(RuntimeError):
    """The function's process could not import its handler (the message names tier and module)."""


class RuntimeExited(RuntimeError):
    """The function's process ended during an invocation."""


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


class LambdaRuntime:
    """A Lambda handler in a separate process: ``runtime(event, context)`` invokes it."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        #: The bootstrap's command line without ``--channel`` (added per process).
        self.command = list(command)
        self.env = dict(env)
        self.environment: dict[str, str] = {}
        self.last_usage: InvocationUsage | None = None
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
            self.last_usage = InvocationUsage(
                float(usage.get("seconds", 0.0)),
                float(usage.get("cpu_seconds", 0.0)),
                int(usage.get("max_memory_mb", 0)),
            )
            if reply.get("type") == "error":
                raise HandlerError(str(reply.get("error")))
            return reply.get("result")

    def stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()
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
