"""The whole parent (uvicorn, IMDS emulator, vsock over Unix sockets) in front of the real enclave server.

The enclave is ``vault.enclave.server.EnclaveServer`` with the real request handler and
the test key decryptor, so these requests are decrypted with HPKE exactly as in production.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest

from emulator.aws.imds import ImdsServer
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.messages import Credential
from vault.common.transport import ENCLAVE_PORT, PARENT_CID, TransportConfig, UnixSocketTransport
from vault.enclave.handler import RequestHandler
from vault.enclave.server import EnclaveServer, ServerConfig
from vault.parent.config import EnclaveTimeouts, ParentConfig, parse_static_enclaves
from vault.parent.credentials import CachedCredentials
from vault.parent.imds import ImdsClient
from vault.parent.server import ParentServer, build_services

pytestmark = pytest.mark.anyio

PEOPLE = [(f"First{i}", f"Last{i}", f"{100000000 + i}") for i in range(20)]


class RecordingKeyDecryptor(LocalKeyDecryptor):
    """The test key decryptor, also noting which access key each request carried."""

    def __init__(self) -> None:
        super().__init__()
        self.access_keys: list[str] = []

    def decrypt_private_key(
        self, *, ciphertext: bytes, vault_id: str, region: str, credential: Credential
    ) -> bytes:
        with self._lock:
            self.access_keys.append(credential.access_key_id.get_secret_value())
        return super().decrypt_private_key(
            ciphertext=ciphertext, vault_id=vault_id, region=region, credential=credential
        )


@dataclass
class Stack:
    decryptor: RecordingKeyDecryptor
    enclave: EnclaveServer
    imds: ImdsServer
    config: ParentConfig
    uds_dir: Path


@contextlib.contextmanager
def enclave_server(
    uds_dir: Path, decryptor: LocalKeyDecryptor, cid: int = 16, **options: object
) -> Iterator[EnclaveServer]:
    config = ServerConfig(read_timeout=5, accept_poll_interval=0.05, shutdown_timeout=2, **options)  # type: ignore[arg-type]
    server = EnclaveServer(UnixSocketTransport(uds_dir, local_cid=cid), RequestHandler(decryptor), config)
    with server:
        yield server


@pytest.fixture
def stack(uds_dir: Path) -> Iterator[Stack]:
    decryptor = RecordingKeyDecryptor()
    with enclave_server(uds_dir, decryptor) as enclave, ImdsServer(role="vault-parent-role") as imds:
        config = ParentConfig(
            port=0,
            imds_endpoint=imds.endpoint,
            static_enclaves=parse_static_enclaves("16"),
            transport=TransportConfig(kind="uds", uds_dir=uds_dir, local_cid=PARENT_CID),
            enclave_timeouts=EnclaveTimeouts(connect=1, read=3),
        )
        yield Stack(decryptor, enclave, imds, config, uds_dir)


def sealed_body(key: VaultKey, first: str, last: str, ssn: str, **overrides: object) -> dict[str, object]:
    fields = {
        "first_name": key.seal_field("first_name", first),
        "last_name": key.seal_field("last_name", last),
    }
    fields["ssn9"] = key.seal_field("ssn9", ssn)
    body = key.request(fields).request.to_wire()
    body.update(overrides)
    return body


async def test_twenty_concurrent_requests_decrypt_correctly_with_one_imds_fetch(stack: Stack) -> None:
    keys = [stack.decryptor.create_vault_key(f"v_person_{i:02d}") for i in range(len(PEOPLE))]
    bodies = [sealed_body(key, *person) for key, person in zip(keys, PEOPLE, strict=True)]
    results: dict[int, httpx.Response] = {}
    with ParentServer(stack.config) as parent:
        async with httpx.AsyncClient(base_url=parent.url, timeout=10, trust_env=False) as client:

            async def one(index: int) -> None:
                results[index] = await client.post("/decrypt", json=bodies[index])

            async with anyio.create_task_group() as group:
                for index in range(len(bodies)):
                    group.start_soon(one, index)

    for index, (first, last, ssn) in enumerate(PEOPLE):
        assert results[index].status_code == 200, results[index].text
        assert results[index].json() == {
            "fields": {"first_name": first, "last_name": last, "ssn9": ssn},
            "errors": [],
        }
    # One token, one role discovery (no role configured: decision D11), one credential fetch.
    assert stack.imds.count("token") == 1
    assert stack.imds.count("role_list") == 1
    assert stack.imds.count("credentials") == 1
    issued = httpx_credentials(stack.imds)
    assert stack.decryptor.access_keys == [issued] * len(PEOPLE)


def httpx_credentials(imds: ImdsServer) -> str:
    """The access key IMDS is currently handing out."""
    with httpx.Client(base_url=imds.endpoint, trust_env=False) as client:
        token = client.put("/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text
        document = client.get(
            "/latest/meta-data/iam/security-credentials/vault-parent-role",
            headers={"X-aws-ec2-metadata-token": token},
        ).json()
    return str(document["AccessKeyId"])


async def test_credentials_are_fetched_once_per_validity_window(stack: Stack) -> None:
    clock_now = [datetime(2025, 6, 1, 12, 0, tzinfo=UTC)]

    def clock() -> datetime:
        return clock_now[0]

    stack.imds.clock = clock
    credentials = CachedCredentials(ImdsClient(stack.imds.endpoint, timeout=1), clock)
    services = build_services(stack.config, credentials=credentials)
    key = stack.decryptor.create_vault_key("v_window")
    body = sealed_body(key, "Ada", "Lovelace", "123456789")
    with (
        ParentServer(stack.config, services) as parent,
        httpx.Client(base_url=parent.url, trust_env=False) as client,
    ):
        for _ in range(3):
            assert client.post("/decrypt", json=body).status_code == 200
        assert stack.imds.count("credentials") == 1
        # IMDS issued credentials for 6 hours; 61 s before expiry they are still used.
        clock_now[0] += timedelta(hours=6) - timedelta(seconds=61)
        assert client.post("/decrypt", json=body).status_code == 200
        assert stack.imds.count("credentials") == 1
        # Inside the 60 s buffer: refreshed once, then reused.
        clock_now[0] += timedelta(seconds=2)
        for _ in range(3):
            assert client.post("/decrypt", json=body).status_code == 200
        assert stack.imds.count("credentials") == 2
    first, renewed = stack.decryptor.access_keys[0], stack.decryptor.access_keys[-1]
    assert stack.decryptor.access_keys == [first] * 4 + [renewed] * 3
    assert first != renewed


async def test_per_field_and_global_enclave_failures_pass_through(stack: Stack) -> None:
    key = stack.decryptor.create_vault_key("v_alpha")
    other = stack.decryptor.create_vault_key("v_beta")
    good = sealed_body(key, "Grace", "Hopper", "987654321")
    broken_field = dict(good, fields=dict(good["fields"], last_name=other.seal_field("last_name", "x")))  # type: ignore[arg-type]
    replayed_key = dict(
        good, encrypted_private_key=sealed_body(other, "a", "b", "c")["encrypted_private_key"]
    )
    with ParentServer(stack.config) as parent, httpx.Client(base_url=parent.url, trust_env=False) as client:
        per_field = client.post("/decrypt", json=broken_field)
        global_failure = client.post("/decrypt", json=replayed_key)

    assert per_field.status_code == 200
    reply = per_field.json()
    assert reply["fields"] == {"first_name": "Grace", "last_name": None, "ssn9": "987654321"}
    assert len(reply["errors"]) == 1 and reply["errors"][0].startswith("[last_name]")

    # Another vault's key blob is refused (decision D10): a global failure, no fields, a code.
    assert global_failure.status_code == 200
    failure = global_failure.json()
    assert "fields" not in failure
    assert failure["code"] == "KeyDecryptFailed"
    assert failure["errors"]


async def test_a_busy_enclave_is_503(uds_dir: Path) -> None:
    decryptor = RecordingKeyDecryptor()
    key = decryptor.create_vault_key("v_busy")
    with enclave_server(uds_dir, decryptor, max_connections=1) as enclave, ImdsServer() as imds:
        config = ParentConfig(
            port=0,
            imds_endpoint=imds.endpoint,
            static_enclaves=parse_static_enclaves("16"),
            transport=TransportConfig(kind="uds", uds_dir=uds_dir, local_cid=PARENT_CID),
        )
        # A client that connects and says nothing holds the enclave's only slot.
        holder = UnixSocketTransport(uds_dir, PARENT_CID).connect(16, ENCLAVE_PORT, timeout=5)
        try:
            with anyio.fail_after(5):
                while enclave.active_connections < 1:
                    await anyio.sleep(0.01)
            with ParentServer(config) as parent, httpx.Client(base_url=parent.url, trust_env=False) as client:
                response = client.post("/decrypt", json=sealed_body(key, "a", "b", "c"))
        finally:
            holder.close()
    assert response.status_code == 503
    assert response.json() == {"code": 503, "message": "enclave 16 is busy"}
    assert decryptor.calls == 0


async def test_an_enclave_that_went_away_is_503(stack: Stack) -> None:
    key = stack.decryptor.create_vault_key("v_gone")
    with ParentServer(stack.config) as parent, httpx.Client(base_url=parent.url, trust_env=False) as client:
        assert client.post("/decrypt", json=sealed_body(key, "a", "b", "c")).status_code == 200
        stack.enclave.shutdown()
        (stack.uds_dir / "vsock-16-5050.sock").unlink(missing_ok=True)
        response = client.post("/decrypt", json=sealed_body(key, "a", "b", "c"))
    assert response.status_code == 503
    assert response.json()["message"] == "enclave 16 is not accepting connections"


async def test_the_parent_validates_before_the_enclave_sees_anything(stack: Stack) -> None:
    key = stack.decryptor.create_vault_key("v_validate")
    body = sealed_body(key, "a", "b", "c", region="moon-base-alpha")
    with ParentServer(stack.config) as parent, httpx.Client(base_url=parent.url, trust_env=False) as client:
        response = client.post("/decrypt", json=body)
    assert response.status_code == 400
    assert stack.decryptor.calls == 0
    assert stack.imds.count("total") == 0
