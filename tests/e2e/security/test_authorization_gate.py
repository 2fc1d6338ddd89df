"""Only an API-authorized request reaches plaintext (decision D16), on the running emulator.

The attacker here has what a workload in the VPC or on the parent instance has: a
vault's table item (read from the backend), the parent's ``POST /decrypt``, the
enclave's vsock port and the instance role's credentials from IMDS. With a valid item
and no authorization, a forged one (signed by a key of the attacker's), an expired one,
another vault's or other fields' (genuine API signatures, made here through the backend,
which no one in the VPC can reach), the enclave answers without plaintext, directly and
through the parent. A fresh authorization of exactly the request, signed the same way,
opens it: the refusals are for the reasons tested, not for a broken setup.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from e2e.security.targets import VaultTarget, enclave_devices
from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.state import EmulatorState
from emulator.tools.client import SigV4Signer, VaultClient
from tests.support.authorization import LocalSigner
from vault.common.authorization import SIGNING_ALGORITHM, Grant, SignedAuthorization, sign
from vault.common.framing import read_json, write_json
from vault.common.transport import DEFAULT_ENCLAVE_CID, ENCLAVE_PORT, PARENT_CID, UnixSocketTransport
from vault.infra.table import vault_key
from vault.parent.imds import ImdsClient

pytestmark = pytest.mark.e2e

NEEDS = "the emulator's backend, parent, enclave socket and IMDS"
SSN = "123450987"
FIRST = "Gated Firstname"
TIMEOUT = 30.0


class BackendSigner:
    """The API's authorizer key, used through the backend (a stand-in for the API's own role)."""

    def __init__(self, kms: Any, key_arn: str) -> None:
        self._kms = kms
        self._key_arn = key_arn
        self.public_key = bytes(kms.get_public_key(KeyId=key_arn)["PublicKey"])

    def sign(self, message: bytes) -> bytes:
        reply = self._kms.sign(
            KeyId=self._key_arn, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        )
        return bytes(reply["Signature"])


class Attacker:
    def __init__(self, target: VaultTarget) -> None:
        state = target.emulator(NEEDS)
        self.facts = state.facts
        self.layout = state.layout
        self.dynamodb = target.backend_client("dynamodb", NEEDS)
        self.api_key = BackendSigner(
            target.backend_client("kms", NEEDS), str(self.facts["authorizer_key_arn"])
        )

    def request_body(self, vault_id: str, fields: list[str]) -> dict[str, Any]:
        """The decrypt request the API would send, built from the raw table item."""
        item = self.dynamodb.get_item(
            TableName=str(self.facts["table_name"]), Key=vault_key(vault_id), ConsistentRead=True
        )["Item"]
        return {
            "vault_id": vault_id,
            "region": str(self.facts["region"]),
            "fields": {name: base64.b64encode(bytes(item[name]["B"])).decode() for name in fields},
            "suite_id": base64.b64encode(bytes(item["_hs"]["B"])).decode(),
            "encrypted_private_key": base64.b64encode(bytes(item["_sk"]["B"])).decode(),
            "encoding": str(item["_v"]["N"]),
        }

    def via_parent(self, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.facts['parent_url']}/decrypt", json=body, timeout=TIMEOUT)
        reply: dict[str, Any] = response.json()
        return reply

    def via_enclave(self, body: dict[str, Any]) -> dict[str, Any]:
        credentials = asyncio.run(ImdsClient(str(self.facts["imds_endpoint"])).fetch())
        transport = UnixSocketTransport(self.layout.vsock_dir, local_cid=PARENT_CID)
        with transport.connect(DEFAULT_ENCLAVE_CID, ENCLAVE_PORT, TIMEOUT) as sock:
            write_json(sock, {"credential": credentials.credential.to_wire(), "request": body})
            reply: dict[str, Any] = read_json(sock, deadline=time.monotonic() + TIMEOUT)
        return reply


def _authorized(
    body: dict[str, Any],
    signer: Any,
    *,
    vault_id: str | None = None,
    fields: list[str] | None = None,
    issued_at: int | None = None,
) -> dict[str, Any]:
    grant = Grant.for_request(
        vault_id=vault_id or body["vault_id"],
        fields=fields if fields is not None else list(body["fields"]),
        expressions={},
        request_id=str(uuid.uuid4()),
        issued_at=int(time.time()) if issued_at is None else issued_at,
    )
    signed: SignedAuthorization = sign(grant, signer)
    return {**body, "authorization": signed.to_wire().model_dump()}


@pytest.fixture
def client(vault_target: VaultTarget) -> Iterator[VaultClient]:
    with vault_target.client() as api:
        yield api


@pytest.fixture
def attacker(vault_target: VaultTarget) -> Attacker:
    return Attacker(vault_target)


def _assert_no_plaintext(reply: dict[str, Any], detail: str) -> None:
    assert "fields" not in reply or not reply["fields"], reply
    text = str(reply)
    assert SSN not in text and FIRST not in text
    assert detail in text, reply


PATHS = ["via_parent", "via_enclave"]


def test_the_api_path_still_decrypts(client: VaultClient) -> None:
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    result = client.decrypt(vault_id, ["ssn9", "first_name"], reason="authorized")
    assert result.data == {"ssn9": SSN, "first_name": FIRST}


@pytest.mark.parametrize("path", PATHS)
def test_a_fresh_exact_authorization_opens_the_item(
    client: VaultClient, attacker: Attacker, path: str
) -> None:
    """The control: the same direct call, with the API key's signature, does decrypt."""
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    body = _authorized(attacker.request_body(vault_id, ["ssn9"]), attacker.api_key)
    reply = getattr(attacker, path)(body)
    assert reply.get("fields") == {"ssn9": SSN}, reply


@pytest.mark.parametrize("path", PATHS)
def test_no_authorization_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    reply = getattr(attacker, path)(attacker.request_body(vault_id, ["ssn9", "first_name"]))
    _assert_no_plaintext(reply, "AuthorizationMissing")


@pytest.mark.parametrize("path", PATHS)
def test_a_forged_authorization_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    """Signed well by the attacker's own key: the vault key is bound to the API's, KMS refuses."""
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    body = _authorized(attacker.request_body(vault_id, ["ssn9"]), LocalSigner())
    _assert_no_plaintext(getattr(attacker, path)(body), "KeyDecryptFailed")


@pytest.mark.parametrize("path", PATHS)
def test_an_expired_authorization_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    body = _authorized(
        attacker.request_body(vault_id, ["ssn9"]), attacker.api_key, issued_at=int(time.time()) - 120
    )
    _assert_no_plaintext(getattr(attacker, path)(body), "AuthorizationExpired")


@pytest.mark.parametrize("path", PATHS)
def test_another_vaults_authorization_no_plaintext(
    client: VaultClient, attacker: Attacker, path: str
) -> None:
    victim = client.create({"first_name": FIRST, "ssn9": SSN})
    own = client.create({"ssn9": "000000000"})
    body = _authorized(attacker.request_body(victim, ["ssn9"]), attacker.api_key, vault_id=own)
    _assert_no_plaintext(getattr(attacker, path)(body), "AuthorizationMismatch")


@pytest.mark.parametrize("path", PATHS)
def test_other_fields_authorization_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    body = _authorized(
        attacker.request_body(vault_id, ["ssn9", "first_name"]), attacker.api_key, fields=["first_name"]
    )
    _assert_no_plaintext(getattr(attacker, path)(body), "AuthorizationMismatch")


@pytest.mark.parametrize("path", PATHS)
def test_a_replayed_authorization_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    vault_id = client.create({"first_name": FIRST, "ssn9": SSN})
    body = _authorized(attacker.request_body(vault_id, ["ssn9"]), attacker.api_key)
    assert getattr(attacker, path)(body).get("fields") == {"ssn9": SSN}
    _assert_no_plaintext(getattr(attacker, path)(body), "AuthorizationReplayed")


def test_the_instance_role_cannot_sign_with_the_api_key(attacker: Attacker) -> None:
    """The trust anchor: the parent's own credentials get no signature from the API's key."""
    credentials = asyncio.run(ImdsClient(str(attacker.facts["imds_endpoint"])).fetch()).credential
    kms = boto3.client(
        "kms",
        endpoint_url=str(attacker.facts["kms_endpoint"]),
        region_name=str(attacker.facts["region"]),
        aws_access_key_id=credentials.access_key_id.get_secret_value(),
        aws_secret_access_key=credentials.secret_access_key.get_secret_value(),
        aws_session_token=credentials.token.get_secret_value(),
    )
    with pytest.raises(ClientError) as refused:
        kms.sign(
            KeyId=str(attacker.facts["authorizer_key_arn"]),
            Message=b"anything",
            MessageType="RAW",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


@pytest.fixture(scope="module")
def sigv4_stack(
    vault_target: VaultTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorState]:
    """An emulator whose gateway checks SigV4 (``--sigv4``), as API Gateway with IAM authorization does."""
    state = vault_target.emulator("an emulator of our own, started with --sigv4")
    config = EmulatorConfig(
        state_dir=tmp_path_factory.mktemp("emulator-sigv4"),
        backend=state.backend,  # type: ignore[arg-type]
        enclave_runtime=state.enclave_runtime,  # type: ignore[arg-type]
        port=0,
        sigv4=True,
        enclave_devices=enclave_devices(),
    )
    started = lifecycle.up(config)
    try:
        yield started
    finally:
        lifecycle.down(config.layout)


def test_the_audit_names_the_caller_and_the_authorized_request(sigv4_stack: EmulatorState) -> None:
    """Audit before reveal, end to end: the record names the principal the gateway verified."""
    principal = sigv4_stack.facts["sigv4_principal"]
    signer = SigV4Signer(
        principal["access_key_id"], principal["secret_access_key"], sigv4_stack.facts["region"]
    )
    with VaultClient(sigv4_stack.api_url, signer=signer) as api:
        vault_id = api.create({"first_name": FIRST, "ssn9": SSN})
        assert api.decrypt(vault_id, ["ssn4"], reason="audited").data == {"ssn4": SSN[-4:]}
        response = api.request("GET", f"/vaults/{vault_id}/audit")
    assert response.status_code == 200
    event = response.json()["events"][0]
    assert (event["event"], event["outcome"], event["reason"]) == ("DecryptVault", "Success", "audited")
    assert event["principal"] == principal["arn"]
    assert event["request_id"]
