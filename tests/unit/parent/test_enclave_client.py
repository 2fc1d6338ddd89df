"""The vsock client: replies, refusals, deadlines, the bounded worker pool (spec 4, decision D12)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from unit.parent.fakes import (
    ENCLAVE_CID,
    TEST_CREDENTIAL,
    FakeEnclave,
    asgi_client,
    assert_error_body,
    decrypt_body,
    echo,
    make_services,
    silent_until_closed,
    slow_echo,
)
from vault.common.messages import BUSY_MESSAGE, DecryptRequest, EnclaveErrorCode, EnclaveRequest
from vault.common.transport import PARENT_CID, UnixSocketTransport
from vault.parent.config import EnclaveTimeouts
from vault.parent.enclave_client import ABORT_MARGIN, EnclaveClient, interpret_reply
from vault.parent.errors import EnclaveTimeout, EnclaveUnavailable

ACCEPTED = "(it accepted the request; it may be waiting on KMS)"

pytestmark = pytest.mark.anyio

REQUEST = EnclaveRequest(credential=TEST_CREDENTIAL, request=DecryptRequest.model_validate(decrypt_body()))


def client(uds_dir: Path, timeouts: EnclaveTimeouts, workers: int = 4) -> EnclaveClient:
    return EnclaveClient(UnixSocketTransport(uds_dir, PARENT_CID), timeouts, workers=workers)


async def test_a_reply_is_returned_as_sent(uds_dir: Path, start_enclave: Callable[..., FakeEnclave]) -> None:
    start_enclave(echo)
    reply = await client(uds_dir, EnclaveTimeouts(1, 1)).decrypt(ENCLAVE_CID, REQUEST)
    assert reply.fields == {k: v[::-1] for k, v in REQUEST.request.fields.items()}
    assert reply.errors == []
    assert not reply.is_global_failure


async def test_the_worker_pool_bounds_concurrent_connections(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    enclave = start_enclave(slow_echo(0.1))
    forwarder = client(uds_dir, EnclaveTimeouts(1, 3), workers=2)
    results: list[object] = []

    async def one() -> None:
        results.append(await forwarder.decrypt(ENCLAVE_CID, REQUEST))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(one)
    assert len(results) == 8
    assert enclave.connections == 8
    assert enclave.max_in_progress == 2


async def test_requests_waiting_for_a_worker_also_time_out(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    start_enclave(silent_until_closed)
    timeouts = EnclaveTimeouts(0.3, 0.3)
    forwarder = client(uds_dir, timeouts, workers=1)
    failures: list[tuple[int, str]] = []

    async def one() -> None:
        with pytest.raises(EnclaveUnavailable) as refused:
            await forwarder.decrypt(ENCLAVE_CID, REQUEST)
        failures.append((refused.value.status, refused.value.message))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(one)
    assert time.monotonic() - started < timeouts.total + ABORT_MARGIN + 0.5
    assert len(failures) == 3
    for status, message in failures:
        assert message.startswith(f"enclave {ENCLAVE_CID} did not answer in time")
        # 504 once the request reached the enclave, 503 while it still waited for a worker.
        assert status == (504 if "accepted the request" in message else 503)
    # The first request had the worker: the enclave took it and stayed silent.
    assert (504, f"enclave {ENCLAVE_CID} did not answer in time {ACCEPTED}") in failures


async def test_a_silent_enclave_that_took_the_request_is_a_timeout_not_unavailability(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    start_enclave(silent_until_closed)
    with pytest.raises(EnclaveTimeout) as refused:
        await client(uds_dir, EnclaveTimeouts(0.3, 0.3)).decrypt(ENCLAVE_CID, REQUEST)
    assert refused.value.status == 504
    assert refused.value.message == f"enclave {ENCLAVE_CID} did not answer in time {ACCEPTED}"


async def test_an_enclave_that_is_not_listening_is_unavailable_not_a_timeout(uds_dir: Path) -> None:
    with pytest.raises(EnclaveUnavailable) as refused:
        await client(uds_dir, EnclaveTimeouts(0.3, 0.3)).decrypt(ENCLAVE_CID, REQUEST)
    assert not isinstance(refused.value, EnclaveTimeout)
    assert refused.value.status == 503


async def test_a_silent_enclave_gets_its_connection_closed_after_the_read_timeout(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    enclave = start_enclave(silent_until_closed)
    with pytest.raises(EnclaveUnavailable):
        await client(uds_dir, EnclaveTimeouts(0.5, 0.3)).decrypt(ENCLAVE_CID, REQUEST)
    for _ in range(100):
        if enclave.closed_after:
            break
        await anyio.sleep(0.02)
    assert len(enclave.closed_after) == 1
    assert enclave.closed_after[0] < 0.3 + ABORT_MARGIN + 0.2


async def test_an_abandoned_http_request_closes_its_enclave_connection(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    # The request timeout (0.2 s) fires long before the enclave read timeout (5 s): the
    # worker must not keep the connection (and an enclave slot) for those 5 s.
    enclave = start_enclave(silent_until_closed)
    services = make_services(uds_dir, timeouts=EnclaveTimeouts(1, 5))
    async with asgi_client(services, request_timeout=0.2) as http:
        response = await http.post("/decrypt", json=decrypt_body())
    assert_error_body(response, 408)
    for _ in range(100):
        if enclave.closed_after:
            break
        await anyio.sleep(0.02)
    assert len(enclave.closed_after) == 1
    assert enclave.closed_after[0] < 1.0


async def test_a_refused_connection_fails_fast(uds_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(EnclaveUnavailable, match="not accepting connections"):
        await client(uds_dir, EnclaveTimeouts(1, 1)).decrypt(99, REQUEST)
    assert time.monotonic() - started < 0.5


def test_interpret_reply_recognises_busy_in_both_forms() -> None:
    for raw in ({"errors": [BUSY_MESSAGE], "code": "EnclaveBusy"}, {"errors": [BUSY_MESSAGE]}):
        with pytest.raises(EnclaveUnavailable, match="is busy"):
            interpret_reply(16, raw)


def test_interpret_reply_keeps_failures_that_are_not_busy() -> None:
    reply = interpret_reply(
        16, {"errors": ["failed to call KMS: denied"], "code": "KeyDecryptFailed", "x": 1}
    )
    assert reply.is_global_failure
    assert reply.code is EnclaveErrorCode.KEY_DECRYPT_FAILED
    # "enclave busy" as one of several per-field errors is not a busy enclave.
    reply = interpret_reply(16, {"fields": {"a": None}, "errors": [BUSY_MESSAGE]})
    assert reply.fields == {"a": None}


@pytest.mark.parametrize(
    "raw", [None, [], "x", {"fields": []}, {"errors": "x"}, {"code": "NoSuchCode", "errors": []}]
)
def test_interpret_reply_refuses_other_shapes(raw: object) -> None:
    with pytest.raises(EnclaveUnavailable, match="wrong shape"):
        interpret_reply(16, raw)
