"""However an enclave fails to answer, the parent answers within its configured timeout: 504 when the
enclave stayed silent past the read budget (alive but slow), 503 for every other failure."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from unit.parent.fakes import FakeEnclave, decrypt_body, make_services, short_tempdir

from vault.common.framing import HEADER_SIZE
from vault.parent.config import EnclaveTimeouts, ParentConfig
from vault.parent.enclave_client import ABORT_MARGIN
from vault.parent.server import ParentServer

TIMEOUTS = EnclaveTimeouts(connect=0.3, read=0.3)
#: Scheduling slack on a loaded two-core machine, on top of the parent's own bound.
SLACK = 1.0


SILENT_KINDS = ("silent", "header then silence")


@dataclass(frozen=True)
class Failure:
    """What the enclave does: maybe read the request, maybe send some bytes, then close or go silent."""

    kind: str
    read_request: bool
    data: bytes = b""

    def __call__(self, enclave: FakeEnclave, conn: socket.socket) -> None:
        if self.read_request:
            enclave.receive(conn)
        if self.data:
            conn.sendall(self.data)
        if self.kind in SILENT_KINDS:
            # Hold the connection, never answering, until the parent gives up on it.
            conn.settimeout(enclave.hold)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass


@st.composite
def failures(draw: st.DrawFn) -> Failure:
    kind = draw(st.sampled_from(["close", "partial header", "truncated body", *SILENT_KINDS]))
    read_request = draw(st.booleans())
    if kind == "partial header":
        return Failure(kind, read_request, draw(st.binary(min_size=1, max_size=HEADER_SIZE - 1)))
    if kind == "truncated body":
        announced = draw(st.integers(min_value=1, max_value=64 * 1024))
        sent = draw(st.binary(max_size=min(announced - 1, 2048)))
        return Failure(kind, read_request, announced.to_bytes(HEADER_SIZE, "little") + sent)
    if kind == "header then silence":
        announced = draw(st.integers(min_value=1, max_value=1024))
        return Failure(kind, True, announced.to_bytes(HEADER_SIZE, "little"))
    return Failure(kind, read_request)


@dataclass
class Harness:
    enclave: FakeEnclave
    client: httpx.Client


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with short_tempdir() as directory, FakeEnclave(directory) as enclave:
        services = make_services(directory, timeouts=TIMEOUTS)
        with ParentServer(ParentConfig(port=0), services) as server:
            with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
                yield Harness(enclave, client)


@settings(deadline=None)
@given(failure=failures())
@example(failure=Failure("close", read_request=False))
@example(failure=Failure("close", read_request=True))
@example(failure=Failure("silent", read_request=False))
@example(failure=Failure("silent", read_request=True))
@example(failure=Failure("partial header", read_request=True, data=b"\x00"))
@example(failure=Failure("truncated body", read_request=True, data=(100).to_bytes(8, "little") + b"x" * 10))
def test_an_enclave_that_does_not_answer_is_503_or_504_in_time(harness: Harness, failure: Failure) -> None:
    event(failure.kind)
    harness.enclave.behaviour = failure
    started = time.monotonic()
    response = harness.client.post("/decrypt", json=decrypt_body())
    elapsed = time.monotonic() - started
    expected = 504 if failure.kind in SILENT_KINDS else 503
    assert response.status_code == expected, response.text
    body = response.json()
    assert body["code"] == expected
    assert body["message"].startswith("enclave 16 ")
    assert elapsed < TIMEOUTS.total + ABORT_MARGIN + SLACK
