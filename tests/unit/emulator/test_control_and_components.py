"""The daemon's control protocol over a real Unix socket, and what each component reads."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.daemon.components import build_components
from emulator.daemon.components.base import Context
from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.daemon.control import control_request, serve_control
from emulator.daemon.graph import Node, check_graph
from emulator.host.process import StartupError


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path)


@pytest.fixture
def served(layout: StateLayout) -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        if request.get("op") == "boom":
            raise RuntimeError("it broke")
        return {"ok": True, "echo": request}

    thread = threading.Thread(
        target=serve_control, args=(layout.control_socket, handle, stop.is_set), daemon=True
    )
    thread.start()
    try:
        for _ in range(200):  # bounded wait for the socket (about 2 s)
            if layout.control_socket.exists():
                break
            threading.Event().wait(0.01)
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive() and not layout.control_socket.exists()


def test_a_request_gets_its_reply(layout: StateLayout, served: list[dict[str, Any]]) -> None:
    assert control_request(layout, {"op": "status"}, timeout=5) == {"ok": True, "echo": {"op": "status"}}
    assert layout.control_socket.stat().st_mode & 0o777 == 0o600
    assert served == [{"op": "status"}]


def test_a_failing_or_malformed_request_is_answered_with_its_error(
    layout: StateLayout, served: list[dict[str, Any]]
) -> None:
    assert control_request(layout, {"op": "boom"}, timeout=5) == {"ok": False, "error": "it broke"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(layout.control_socket))
        sock.sendall(b"[1, 2]\n")
        assert b"must be a JSON object" in sock.recv(65536)


def test_no_daemon_is_an_os_error(layout: StateLayout) -> None:
    with pytest.raises(OSError):
        control_request(layout, {"op": "status"}, timeout=1)


def test_each_component_needs_exactly_the_components_it_reads(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=tmp_path, sigv4=True)
    context = Context(config, config.layout)
    parts = build_components(context)
    needs = {component.name: component.needs for component in parts.components}
    assert needs == {
        "backend": (),
        "image": (),
        "pki": (),
        "imds": (),
        "dynamodb-proxy": ("backend",),
        "provision": ("backend", "image"),
        "kms-front": ("backend", "provision", "pki"),
        "vsock-proxy": ("kms-front",),
        "nsm": ("pki",),
        "enclave": ("image", "nsm", "vsock-proxy"),
        "parent": ("imds",),
        "gateway": ("provision", "kms-front", "parent", "dynamodb-proxy"),
    }
    check_graph([Node(c.name, c.needs, c.start) for c in parts.components])
    # Published for clients: the test principal, and PCR3 of the simulated instance role.
    assert context.facts["sigv4_principal"]["arn"].endswith(":user/vault-tester")
    assert parts.credentials.api.access_key_id == config.account_id
    # A result read before its component started is a clear error, not a missing key.
    with pytest.raises(StartupError, match="backend is not running"):
        _ = parts.backend.backend
    with pytest.raises(StartupError, match="provision is not running"):
        parts.gateway.lambda_environment()
