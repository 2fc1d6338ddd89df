"""Start a tier's entry point from its artifact alone (standard library only; run as a script).

``python -I -S -u bootstrap.py --tier T --path DIR [--path DIR ...] --entry module:function``

The emulator copies this file next to a tier's artifact and runs it with an isolated
interpreter: ``-I`` ignores ``PYTHON*`` variables and the user's site directory and keeps
the script's own directory off ``sys.path``, ``-S`` keeps the interpreter's site-packages
off it. ``sys.path`` is then the ``--path`` directories (the tier's file set, its
dependency set) and the standard library, as in the deployed runtime, so a module the
artifact lacks fails here as it would in AWS: the process exits with
:data:`EXIT_MISSING_MODULE` after one line naming the tier and the module.

Two ways to run the entry point:

* as a console script (the parent): ``sys.argv`` is the entry module and the arguments
  after ``--``, and the function's return value is the exit status;
* as a Lambda function (``--channel FD``): the function is a Lambda handler, invoked for
  each message on the inherited socket ``FD`` (the gateway's end of a socket pair). The
  messages are 4-byte big-endian lengths followed by JSON; see :func:`serve_invocations`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: The exit status when the entry point's imports need a module the artifact lacks.
EXIT_MISSING_MODULE = 78
#: What the one line about a missing module starts with (the emulator looks for it).
MISSING_MODULE_PREFIX = "artifact error:"
_LENGTH = struct.Struct(">I")
#: Bound on one message (API Gateway's payloads are at most 10 MiB, base64 adds a third).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bootstrap.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", required=True)
    parser.add_argument("--path", action="append", default=[], required=True)
    parser.add_argument("--entry", required=True, help="module:function")
    parser.add_argument("--channel", type=int, help="run as a Lambda function over this socket")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def missing_module_message(tier: str, module: str, entry: str) -> str:
    return f"the {tier} tier's artifact lacks module {module!r} (importing {entry})"


def report(message: str) -> None:
    """The one line the emulator looks for in the log."""
    print(f"{MISSING_MODULE_PREFIX} {message}", file=sys.stderr, flush=True)


def load_entry(tier: str, entry: str) -> Callable[..., Any] | str:
    """The entry point's function, or a message naming the module its imports lack."""
    module_name, _, function = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        return missing_module_message(tier, exc.name or "?", module_name)
    target = getattr(module, function, None)
    if not callable(target):
        return f"the {tier} tier's entry point {entry} is not a function"
    return target  # type: ignore[no-any-return]


# -- Lambda mode -------------------------------------------------------------------


def send(channel: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    channel.sendall(_LENGTH.pack(len(data)) + data)


def receive(channel: socket.socket) -> dict[str, Any] | None:
    """The next message, or ``None`` once the other end closed the channel."""
    header = _read_exactly(channel, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")
    data = _read_exactly(channel, length)
    if data is None:
        return None
    message: dict[str, Any] = json.loads(data)
    return message


def _read_exactly(channel: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = channel.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class InvocationContext:
    """The Lambda context object's attributes that handlers and Powertools read."""

    def __init__(self, attributes: dict[str, Any], remaining_ms: int) -> None:
        self.function_name = str(attributes["function_name"])
        self.function_version = str(attributes["function_version"])
        self.invoked_function_arn = str(attributes["invoked_function_arn"])
        self.memory_limit_in_mb = int(attributes["memory_limit_in_mb"])
        self.aws_request_id = str(attributes["aws_request_id"])
        self.log_group_name = str(attributes["log_group_name"])
        self.log_stream_name = str(attributes["log_stream_name"])
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def serve_invocations(handler: Callable[[Any, Any], Any], channel: socket.socket) -> int:
    """Answer the gateway's messages until it closes the channel.

    ``{"type": "environment", "values": {...}}`` adds the function's environment (it
    arrives after the cold start, as the gateway starts this process early);
    ``{"type": "invoke", "event": ..., "context": {...}, "remaining_ms": N}`` runs the
    handler and answers ``{"type": "result", "result": ..., "usage": {...}}``, or
    ``{"type": "error", "error": <exception type>, "usage": {...}}`` (the type only: an
    exception's message may quote the request).
    """
    while True:
        message = receive(channel)
        if message is None:
            return 0
        if message.get("type") == "environment":
            os.environ.update({str(k): str(v) for k, v in message["values"].items()})
            send(channel, {"type": "configured"})
            continue
        context = InvocationContext(message["context"], int(message["remaining_ms"]))
        began, cpu = time.perf_counter(), time.thread_time()
        reply: dict[str, Any]
        try:
            result = handler(message["event"], context)
            # Lambda serialises the result as JSON; one it cannot serialise is an error.
            json.dumps(result)
            reply = {"type": "result", "result": result}
        except BaseException as exc:  # noqa: BLE001 - a Lambda that raises, whatever it raises
            reply = {"type": "error", "error": type(exc).__name__}
        reply["usage"] = {
            "seconds": time.perf_counter() - began,
            "cpu_seconds": time.thread_time() - cpu,
            "max_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        }
        send(channel, reply)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The artifact's directories come first; the standard library stays after them.
    sys.path[:0] = args.path
    target = load_entry(args.tier, args.entry)
    channel = socket.socket(fileno=args.channel) if args.channel is not None else None
    if isinstance(target, str):
        report(target)
        if channel is not None:
            send(channel, {"type": "init_error", "message": target})
        return EXIT_MISSING_MODULE
    if channel is not None:
        send(channel, {"type": "ready"})
        return serve_invocations(target, channel)
    remaining = args.args[1:] if args.args[:1] == ["--"] else args.args
    sys.argv = [args.entry.partition(":")[0], *remaining]
    try:
        status = target()
    except ModuleNotFoundError as exc:
        # An import inside the entry point (done late on purpose) fails the same way.
        report(missing_module_message(args.tier, exc.name or "?", args.entry))
        return EXIT_MISSING_MODULE
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
