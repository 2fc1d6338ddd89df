"""The daemon's control protocol: one JSON line in, one JSON line out, over a Unix socket.

Requests are objects with an ``op``: ``status``, ``relaunch-enclave`` (``overrides``:
path -> text of files to change in the enclave image), ``fault`` (``action``, ``name``,
``params``; see :mod:`emulator.faults.injector`) and ``stop``. Replies carry ``ok`` and
either the result or ``error``. The socket lives in the state directory's runtime
directory, mode 0600: only the user who started the emulator can control it.

The server answers one connection at a time, so two control operations never race.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.daemon.config import StateLayout

log = logging.getLogger("emulator.daemon.control")

#: How long a client waits for a reply. The slowest operation is a relaunch of the
#: enclave, which for the container runtime builds an image (minutes on a cold cache);
#: a shorter wait would report a failure for a relaunch that then succeeds.
CONTROL_TIMEOUT = 300.0
#: How long the server waits for a connected client to send its request line. A request
#: is one short line sent at once; the bound keeps a client that connects and sends
#: nothing from holding the (single-threaded) control loop.
READ_TIMEOUT = 10.0
#: Longest request or reply line.
MAX_LINE = 1 << 20
#: How often the accept loop wakes to check ``stop`` and run ``tick``.
POLL_INTERVAL = 0.5

Request = dict[str, Any]
Reply = dict[str, Any]


def read_line(connection: socket.socket, limit: int = MAX_LINE) -> bytes:
    """Bytes up to and including the first newline (or the end of the stream, or ``limit``)."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def control_request(layout: StateLayout, request: Request, timeout: float = CONTROL_TIMEOUT) -> Reply:
    """Send one control request to the daemon of ``layout`` and return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(layout.control_socket))
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = json.loads(read_line(sock))
    finally:
        sock.close()
    if not isinstance(reply, dict):
        raise ValueError("the daemon's reply is not a JSON object")
    return reply


def listen_control(path: Path) -> socket.socket:
    """The control socket at ``path``, listening (owner-only).

    The daemon opens it before it reports ``running``, so a client that reads that
    phase never finds the socket missing; requests made earlier wait in the backlog.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # Bound and listening under a temporary name, then renamed: the socket appears at
    # ``path`` only once it accepts, so a client that sees it never gets "connection refused".
    staging = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(staging))
        os.chmod(staging, 0o600)
        server.listen(8)
        os.replace(staging, path)
    except OSError:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise
    return server


def serve_control(
    path: Path,
    handle: Callable[[Request], Reply],
    should_stop: Callable[[], bool],
    *,
    tick: Callable[[], None] | None = None,
    tick_interval: float = 2.0,
    server: socket.socket | None = None,
) -> None:
    """Answer control requests on ``path`` with ``handle`` until ``should_stop()``.

    ``server`` is the socket :func:`listen_control` opened on ``path`` (opened here
    when not given). ``tick`` runs about every ``tick_interval`` seconds between
    requests (the supervisor's liveness check). A request that fails is answered
    with its error.
    """
    if server is None:
        server = listen_control(path)
    server.settimeout(POLL_INTERVAL)
    next_tick = time.monotonic() + tick_interval
    try:
        while not should_stop():
            if tick is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_interval
                with contextlib.suppress(Exception):
                    tick()
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(READ_TIMEOUT)
                try:
                    request = json.loads(read_line(connection))
                    if not isinstance(request, dict):
                        raise ValueError("a control request must be a JSON object")
                    reply = handle(request)
                except Exception as exc:
                    log.exception("control request failed")
                    reply = {"ok": False, "error": str(exc)}
                with contextlib.suppress(OSError):
                    connection.sendall(json.dumps(reply).encode() + b"\n")
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
