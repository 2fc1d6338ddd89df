"""``POST /decrypt/batch``: validation, one message to one enclave, replies in request order.

Two layers: the application in-process in front of fake enclaves (what the parent sends,
how it maps every enclave failure), and the whole parent in front of the real enclave
server, whose batch frames go through the real request handler.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.aws.imds import ImdsServer
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from unit.parent.fakes import (
    ACCESS_KEY_ID,
    ENCLAVE_CID,
    SECRET_ACCESS_KEY,
    FakeEnclave,
    FixedCredentials,
    asgi_client,
    assert_error_body,
    busy,
    decrypt_body,
    global_failure,
    make_services,
    silent,
)
from vault.common.framing import write_json
from vault.common.messages import MAX_BATCH
from vault.common.transport import PARENT_CID, TransportConfig, UnixSocketTransport
from vault.enclave.handler import RequestHandler
from vault.enclave.server import EnclaveServer, ServerConfig
from vault.parent.config import EnclaveTimeouts, ParentConfig, parse_static_enclaves
from vault.parent.enclave_client import BATCH_READ_FACTOR
from vault.parent.server import ParentServer

pytestmark = pytest.mark.anyio

JSON_HEADERS = {"Content-Type": "application/json"}


def batch_echo(enclave: FakeEnclave, conn: socket.socket) -> None:
    """A healthy enclave's batch answer: each request's fields back, reversed."""
    message = enclave.receive(conn)
    replies = [
        {"fields": {name: value[::-1] for name, value in request["fields"].items()}, "errors": []}
        for request in message["batch"]
    ]
    write_json(conn, {"replies": replies})


def answer(payload: Any) -> Callable[[FakeEnclave, socket.socket], None]:
    def behaviour(enclave: FakeEnclave, conn: socket.socket) -> None:
        enclave.receive(conn)
        write_json(conn, payload)

    return behaviour


def batch(*requests: dict[str, Any]) -> dict[str, Any]:
    return {"requests": list(requests)}


async def post(services: Any, body: Any) -> httpx.Response:
    async with asgi_client(services) as client:
        return await client.post("/decrypt/batch", content=json.dumps(body), headers=JSON_HEADERS)


# -- what the parent sends and answers -------------------------------------------------------


async def test_a_batch_is_one_message_to_one_enclave_with_one_credential(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    enclave = start_enclave(batch_echo)
    credentials = FixedCredentials()
    first = decrypt_body(vault_id="v_first", fields={"first_name": "bnnA"})
    second = decrypt_body(vault_id="v_second", fields={"last_name": "htimS", "dob": "10-10"})
    response = await post(make_services(uds_dir, credentials=credentials), batch(first, second))
    assert response.status_code == 200
    assert response.json() == {
        "replies": [
            {"fields": {"first_name": "Annb"}, "errors": []},
            {"fields": {"dob": "01-01", "last_name": "Smith"}, "errors": []},
        ]
    }
    assert enclave.connections == 1 and credentials.calls == 1
    (message,) = enclave.messages
    assert [request["vault_id"] for request in message["batch"]] == ["v_first", "v_second"]
    assert message["credential"]["AccessKeyId"] == ACCESS_KEY_ID
    # Each request is forwarded as sent (the authorization and every other key included).
    assert message["batch"][0] == first


async def test_one_refused_entry_is_its_own_reply(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    replies = [
        {"fields": {"ssn9": "x"}, "errors": []},
        {"errors": ["unauthorized (AuthorizationMissing): no authorization"], "code": "Unauthorized"},
    ]
    start_enclave(answer({"replies": replies}))
    response = await post(make_services(uds_dir), batch(decrypt_body(), decrypt_body(vault_id="v_other")))
    assert response.status_code == 200
    assert response.json()["replies"] == replies


async def test_a_whole_frame_refusal_is_every_entrys_reply(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    start_enclave(global_failure)
    response = await post(make_services(uds_dir), batch(decrypt_body(), decrypt_body(vault_id="v_other")))
    assert response.status_code == 200
    replies = response.json()["replies"]
    assert len(replies) == 2 and all(reply["code"] == "KeyDecryptFailed" for reply in replies)
    assert all("fields" not in reply for reply in replies)


@pytest.mark.parametrize(
    ("behaviour", "status", "message"),
    [
        pytest.param(busy, 503, "enclave 16 is busy", id="busy"),
        pytest.param(answer({"replies": [{"errors": []}]}), 503, "wrong count", id="too-few"),
        pytest.param(
            answer({"fields": {"ssn9": "x"}, "errors": []}), 503, "single reply", id="single-success"
        ),
        pytest.param(answer({"replies": "no"}), 503, "wrong shape", id="wrong-shape"),
    ],
)
async def test_unusable_answers_are_503(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave], behaviour: Any, status: int, message: str
) -> None:
    start_enclave(behaviour)
    response = await post(make_services(uds_dir), batch(decrypt_body(), decrypt_body(vault_id="v_other")))
    body = assert_error_body(response, status)
    assert message in body["message"]
    assert SECRET_ACCESS_KEY not in response.text


async def test_a_silent_enclave_is_504_after_the_longer_batch_budget(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    start_enclave(silent)
    timeouts = EnclaveTimeouts(connect=0.2, read=0.2)
    services = make_services(uds_dir, timeouts=timeouts)
    response = await post(services, batch(decrypt_body()))
    assert_error_body(response, 504)
    assert response.elapsed.total_seconds() >= 0.2 * BATCH_READ_FACTOR - 0.05


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        pytest.param(batch(), 422, "requests", id="empty"),
        pytest.param(batch(*[decrypt_body()] * (MAX_BATCH + 1)), 422, "requests", id="over-the-bound"),
        pytest.param({"request": [decrypt_body()]}, 422, "requests", id="wrong-key"),
        pytest.param(
            batch(decrypt_body(fields={"ssn9": None})), 422, "requests.0.fields.ssn9", id="null-field"
        ),
        pytest.param(
            batch(decrypt_body(), decrypt_body(region="moon")), 400, "requests.1.region", id="region"
        ),
        pytest.param(batch(decrypt_body(vault_id="")), 400, "requests.0.vault_id", id="empty-id"),
    ],
)
async def test_invalid_batches_never_reach_an_enclave(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave], body: Any, status: int, text: str
) -> None:
    enclave = start_enclave(batch_echo)
    credentials = FixedCredentials()
    response = await post(make_services(uds_dir, credentials=credentials), body)
    assert text in assert_error_body(response, status)["message"]
    assert enclave.connections == 0 and credentials.calls == 0


async def test_malformed_json_wrong_media_type_and_no_enclaves(uds_dir: Path) -> None:
    services = make_services(uds_dir, ())
    async with asgi_client(services) as client:
        malformed = await client.post("/decrypt/batch", content=b"{", headers=JSON_HEADERS)
        media = await client.post("/decrypt/batch", content=json.dumps(batch(decrypt_body())))
        none = await client.post(
            "/decrypt/batch", content=json.dumps(batch(decrypt_body())), headers=JSON_HEADERS
        )
        method = await client.get("/decrypt/batch")
    assert_error_body(malformed, 400)
    assert_error_body(media, 415)
    assert_error_body(none, 404)
    assert_error_body(method, 405)


# -- the whole parent in front of the real enclave server ------------------------------------


@pytest.fixture
def real_enclave(uds_dir: Path) -> Iterator[tuple[LocalKeyDecryptor, ParentConfig]]:
    decryptor = LocalKeyDecryptor()
    config = ServerConfig(read_timeout=5, accept_poll_interval=0.05, shutdown_timeout=2)
    server = EnclaveServer(UnixSocketTransport(uds_dir, local_cid=16), RequestHandler(decryptor), config)
    with server, ImdsServer(role="vault-parent-role") as imds:
        yield (
            decryptor,
            ParentConfig(
                port=0,
                imds_endpoint=imds.endpoint,
                static_enclaves=parse_static_enclaves(str(ENCLAVE_CID)),
                transport=TransportConfig(kind="uds", uds_dir=uds_dir, local_cid=PARENT_CID),
                enclave_timeouts=EnclaveTimeouts(connect=1, read=3),
            ),
        )


def sealed(key: VaultKey, **values: str) -> dict[str, Any]:
    return key.request(
        {name: key.seal_field(name, value) for name, value in values.items()}
    ).request.to_wire()


async def test_the_real_enclave_answers_each_entry_as_it_would_alone(
    real_enclave: tuple[LocalKeyDecryptor, ParentConfig],
) -> None:
    decryptor, config = real_enclave
    alpha, beta = decryptor.create_vault_key("v_alpha"), decryptor.create_vault_key("v_beta")
    good = sealed(alpha, first_name="Grace", ssn9="987654321")
    other = sealed(beta, last_name="Lovelace")
    # Beta's key blob under alpha's id: refused for that entry alone (decision D10).
    swapped_key = dict(good, encrypted_private_key=other["encrypted_private_key"])
    with ParentServer(config) as parent, httpx.Client(base_url=parent.url, trust_env=False) as client:
        response = client.post("/decrypt/batch", json=batch(good, other, swapped_key))
        single = client.post("/decrypt", json=other)
    assert response.status_code == 200
    first, second, third = response.json()["replies"]
    assert first == {"fields": {"first_name": "Grace", "ssn9": "987654321"}, "errors": []}
    assert second == {"fields": {"last_name": "Lovelace"}, "errors": []}
    assert third["code"] == "KeyDecryptFailed" and "fields" not in third
    # The single route is unchanged beside it.
    assert single.json() == second
