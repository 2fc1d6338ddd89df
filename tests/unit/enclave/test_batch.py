"""Batch frames in the enclave: each entry handled as if it came alone, one reply per entry.

Entries carry the API's authorizations (a local signer here), so the tests can move,
drop and reuse them as a parent that reaches the enclave directly could.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.authorization import LocalSigner, authorize
from tests.support.enclave_keys import TEST_CREDENTIAL, LocalKeyDecryptor, VaultKey
from vault.common.authorization import AuthorizationVerifier, authorizer_digest
from vault.common.framing import read_frame, write_frame
from vault.common.messages import (
    MAX_BATCH,
    DecryptRequest,
    EnclaveBatchReply,
    EnclaveBatchRequest,
    EnclaveErrorCode,
    EnclaveReply,
)
from vault.common.transport import UnixSocketTransport
from vault.enclave.batch import BatchHandler, might_be_batch
from vault.enclave.handler import RequestHandler
from vault.enclave.server import EnclaveServer, ServerConfig

API = LocalSigner()
PEOPLE = {
    "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL": {"first_name": "Ann", "ssn9": "123456789"},
    "v_3N1LaX92pADbWiWBIJw4cx87lXr": {"first_name": "Bob", "ssn9": "987654321"},
    "v_3N1LaX92pADbWiWBIJw4cx87lXs": {"first_name": "Cid", "ssn9": "555443333"},
}
PLAINTEXTS = [value for person in PEOPLE.values() for value in person.values()]


class SlowDecryptor(LocalKeyDecryptor):
    """A key call that waits ``delay`` seconds (a KMS round trip) and notes how many overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.most_active = 0
        self._count = threading.Lock()

    def decrypt_private_key(self, **kwargs: Any) -> bytes:
        with self._count:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(self.delay)
            return super().decrypt_private_key(**kwargs)
        finally:
            with self._count:
                self.active -= 1


@pytest.fixture
def slow() -> SlowDecryptor:
    return SlowDecryptor()


@pytest.fixture
def handler(slow: SlowDecryptor) -> RequestHandler:
    return RequestHandler(slow, authorizer=AuthorizationVerifier())


def _signed(decryptor: LocalKeyDecryptor, vault_id: str, request_id: str) -> DecryptRequest:
    key: VaultKey = decryptor.create_vault_key(vault_id, authorizer=authorizer_digest(API.public_key))
    fields = {name: key.seal_field(name, value) for name, value in PEOPLE[vault_id].items()}
    authorization = authorize(
        API, vault_id=vault_id, fields=list(fields), request_id=request_id, issued_at=int(time.time())
    ).to_wire()
    return key.request(fields, authorization=authorization).request


def _batch(decryptor: LocalKeyDecryptor) -> list[DecryptRequest]:
    return [_signed(decryptor, vault_id, f"req-{index}") for index, vault_id in enumerate(PEOPLE)]


def _frame(requests: list[Any]) -> bytes:
    wire = [request.to_wire() if isinstance(request, DecryptRequest) else request for request in requests]
    return json.dumps({"batch": wire, "credential": TEST_CREDENTIAL.to_wire()}).encode()


def _handle(handler: RequestHandler, requests: list[Any], **options: Any) -> list[EnclaveReply]:
    reply = BatchHandler(handler, **options).handle_frame(_frame(requests))
    assert isinstance(reply, EnclaveBatchReply), reply
    return reply.replies


def _refused(reply: EnclaveReply, code: EnclaveErrorCode, detail: str) -> None:
    assert reply.fields is None, "nothing revealed"
    assert reply.code is code
    assert detail in reply.errors[0]


def test_each_entry_is_answered_in_order(handler: RequestHandler, slow: SlowDecryptor) -> None:
    replies = _handle(handler, _batch(slow))
    assert [reply.fields for reply in replies] == list(PEOPLE.values())
    assert all(reply.errors == [] for reply in replies)
    assert slow.calls == len(PEOPLE), "one key call per vault, under its own encryption context"


def test_entries_overlap_their_key_calls(handler: RequestHandler, slow: SlowDecryptor) -> None:
    slow.delay = 0.05
    replies = _handle(handler, _batch(slow), workers=3)
    assert all(reply.fields is not None for reply in replies)
    assert slow.most_active >= 2


def test_one_worker_handles_entries_one_after_another(handler: RequestHandler, slow: SlowDecryptor) -> None:
    slow.delay = 0.01
    _handle(handler, _batch(slow), workers=1)
    assert slow.most_active == 1
    with pytest.raises(ValueError):
        BatchHandler(handler, workers=0)


def test_swapped_authorizations_are_refused_for_both_entries(
    handler: RequestHandler, slow: SlowDecryptor
) -> None:
    first, second, third = _batch(slow)
    swapped = [
        first.model_copy(update={"authorization": second.authorization}),
        second.model_copy(update={"authorization": first.authorization}),
        third,
    ]
    one, two, three = _handle(handler, swapped)
    _refused(one, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    _refused(two, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    assert three.fields == PEOPLE["v_3N1LaX92pADbWiWBIJw4cx87lXs"]
    assert slow.calls == 1, "refused entries cost no key call"
    text = json.dumps([one.to_wire(), two.to_wire()])
    assert not any(value in text for value in PLAINTEXTS)


def test_an_entry_without_authorization_is_unauthorized_alone(
    handler: RequestHandler, slow: SlowDecryptor
) -> None:
    first, second, third = _batch(slow)
    one, two, three = _handle(handler, [first, second.model_copy(update={"authorization": None}), third])
    _refused(two, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMissing")
    assert one.fields is not None and three.fields is not None


def test_an_authorization_used_twice_reveals_once(handler: RequestHandler, slow: SlowDecryptor) -> None:
    first, _, _ = _batch(slow)
    replies = _handle(handler, [first, first, first])
    assert sum(reply.fields is not None for reply in replies) == 1
    for reply in replies:
        if reply.fields is None:
            _refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationReplayed")
    # And a later batch with the same entry is a replay too.
    (again,) = _handle(handler, [first])
    _refused(again, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationReplayed")


def test_an_entry_that_is_not_a_request_is_refused_alone(
    handler: RequestHandler, slow: SlowDecryptor
) -> None:
    first, _, third = _batch(slow)
    secret = "AKIA-not-to-be-echoed"
    one, two, three, four = _handle(handler, [first, {"vault_id": secret}, "text", third])
    _refused(two, EnclaveErrorCode.INVALID_REQUEST, "invalid request")
    _refused(three, EnclaveErrorCode.INVALID_REQUEST, "invalid request")
    assert secret not in two.errors[0]
    assert one.fields is not None and four.fields is not None


@pytest.mark.parametrize(
    ("document", "detail"),
    [
        pytest.param({"batch": []}, "credential", id="no-credential"),
        pytest.param({"batch": [], "credential": TEST_CREDENTIAL.to_wire()}, "1 to 50", id="empty"),
        pytest.param(
            {"batch": {"a": 1}, "credential": TEST_CREDENTIAL.to_wire()}, "1 to 50", id="not-a-list"
        ),
        pytest.param(
            {"batch": [{}] * (MAX_BATCH + 1), "credential": TEST_CREDENTIAL.to_wire()},
            "1 to 50",
            id="too-many",
        ),
    ],
)
def test_a_frame_that_is_no_batch_is_refused_whole(
    handler: RequestHandler, slow: SlowDecryptor, document: dict[str, Any], detail: str
) -> None:
    reply = BatchHandler(handler).handle_frame(json.dumps(document).encode())
    assert isinstance(reply, EnclaveReply)
    _refused(reply, EnclaveErrorCode.INVALID_REQUEST, detail)
    assert slow.calls == 0


def test_single_requests_keep_their_path_and_format(handler: RequestHandler, slow: SlowDecryptor) -> None:
    request = _batch(slow)[0]
    raw = json.dumps({"credential": TEST_CREDENTIAL.to_wire(), "request": request.to_wire()}).encode()
    assert not might_be_batch(raw)
    reply = BatchHandler(handler).handle_frame(raw)
    assert isinstance(reply, EnclaveReply) and reply.fields == PEOPLE["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"]


def test_a_single_request_that_mentions_batch_is_still_a_single_request(
    handler: RequestHandler, slow: SlowDecryptor
) -> None:
    request = _batch(slow)[0].model_copy(update={"expressions": {"batch": '"batch"'}})
    raw = json.dumps({"credential": TEST_CREDENTIAL.to_wire(), "request": request.to_wire()}).encode()
    assert might_be_batch(raw)
    reply = BatchHandler(handler).handle_frame(raw)
    assert isinstance(reply, EnclaveReply)
    # Refused as that single request is refused (its authorization names no expression).
    _refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")


def test_reprs_name_no_values(slow: SlowDecryptor) -> None:
    requests = _batch(slow)
    texts = [
        repr(EnclaveBatchRequest(credential=TEST_CREDENTIAL, batch=requests)),
        repr(EnclaveBatchReply(replies=[EnclaveReply(fields=PEOPLE["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"])])),
    ]
    for text in texts:
        assert not any(value in text for value in PLAINTEXTS)
        assert TEST_CREDENTIAL.secret_access_key.get_secret_value() not in text
        assert requests[0].fields["ssn9"] not in text


# -- over the socket -------------------------------------------------------------------------


@pytest.fixture
def server(handler: RequestHandler) -> Iterator[UnixSocketTransport]:
    with tempfile.TemporaryDirectory(prefix="vsock-") as path:
        transport = UnixSocketTransport(Path(path), local_cid=16)
        config = ServerConfig(read_timeout=5.0, accept_poll_interval=0.05, shutdown_timeout=2.0)
        with EnclaveServer(transport, handler, config):
            yield transport


def _exchange(transport: UnixSocketTransport, payload: bytes) -> Any:
    with transport.connect(16, 5050, timeout=5) as sock:
        write_frame(sock, payload)
        return json.loads(read_frame(sock))


def test_the_server_routes_batch_frames(server: UnixSocketTransport, slow: SlowDecryptor) -> None:
    requests = _batch(slow)
    reply = _exchange(server, _frame(requests))
    assert reply == {"replies": [{"fields": person, "errors": []} for person in PEOPLE.values()]}
    single = _signed(slow, "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL", "req-single")
    raw = json.dumps({"credential": TEST_CREDENTIAL.to_wire(), "request": single.to_wire()}).encode()
    assert _exchange(server, raw) == {"fields": PEOPLE["v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"], "errors": []}
