"""``POST /vaults/decrypt`` on the running emulator, and its batch route attacked directly.

Through the gateway: per-vault results in request order, a missing vault as that vault's
error, one audit record per vault (each its own request id). A reveal policy on an
emulator of its own (``--sigv4`` and a policy file): one vault refused by the policy,
the others answered.

Then as an attacker in the VPC or on the parent (see
``tests/e2e/security/test_authorization_gate.py``): table items read from the backend,
sent as a batch to the parent's ``POST /decrypt/batch`` and straight to the enclave's
vsock port, without authorizations, with forged ones, with genuine ones swapped between
entries: no plaintext for any of them. Genuine authorizations of exactly each entry,
signed with the API's key through the backend (which no one in the VPC can reach), do
open the same batch: the refusals are for the reasons tested.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.state import EmulatorState
from emulator.tools.client import SigV4Signer, VaultApiError, VaultClient
from tests.support.authorization import LocalSigner
from vault.common.authorization import SIGNING_ALGORITHM, Grant, sign
from vault.common.framing import read_json, write_json
from vault.common.transport import DEFAULT_ENCLAVE_CID, ENCLAVE_PORT, PARENT_CID, UnixSocketTransport
from vault.infra.table import vault_key
from vault.parent.imds import ImdsClient

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
PEOPLE = [
    {"first_name": "Batch Ann", "ssn9": "111223333", "dob": "1980-02-03"},
    {"first_name": "Batch Bob", "ssn9": "444556666", "dob": "1991-07-08"},
    {"first_name": "Batch Cid", "ssn9": "777889999", "dob": "2001-11-12"},
]
PLAINTEXTS = [value for person in PEOPLE for value in person.values()]


def _decrypt_events(client: VaultClient, vault_id: str) -> list[dict[str, Any]]:
    """The vault's DecryptVault records as the audit route shows them (principal and request id too)."""
    response = client.request("GET", f"/vaults/{vault_id}/audit")
    assert response.status_code == 200, response.text
    return [event for event in response.json()["events"] if event["event"] == "DecryptVault"]


def _created(client: VaultClient) -> list[str]:
    return [client.create(person) for person in PEOPLE]


def test_each_vault_gets_its_result_and_its_own_audit_record(client: VaultClient) -> None:
    ann, bob, cid = _created(client)
    missing = "v_0000000000000000000000000"
    results = client.decrypt_batch(
        [
            {"id": cid, "fields": ["first_name", "ssn4"]},
            {"id": missing, "fields": ["first_name"]},
            {"id": ann, "fields": ["dob", "email"], "expressions": {"age": "date(dob).age()"}},
            {"id": bob, "fields": ["ssn9"]},
        ],
        reason="batch e2e",
    )
    assert [result["id"] for result in results] == [cid, missing, ann, bob]
    assert results[0]["data"] == {"first_name": "Batch Cid", "ssn4": "9999"} and results[0]["errors"] == []
    assert results[1]["error"]["code"] == "VaultNotFound" and results[1]["error"]["status"] == 404
    assert results[2]["data"]["dob"] == "1980-02-03" and results[2]["data"]["email"] is None
    assert isinstance(results[2]["data"]["age"], int)
    assert results[2]["errors"] == ["[email] field not present in vault"]
    assert results[3]["data"] == {"ssn9": "444556666"}

    request_ids = set()
    for vault, outcome in ((cid, "Success"), (ann, "PartialSuccess"), (bob, "Success")):
        (record,) = _decrypt_events(client, vault)
        assert record["outcome"] == outcome
        assert record["reason"] == "batch e2e"
        assert record["request_id"]
        request_ids.add(record["request_id"])
    assert len(request_ids) == 3
    with pytest.raises(VaultApiError) as unknown:
        client.audit(missing)
    assert unknown.value.status == 404, "an unknown vault leaves no audit record"


def test_invalid_batches_are_refused(client: VaultClient) -> None:
    vault = client.create(PEOPLE[0])
    for vaults in (
        [],
        [{"id": vault, "fields": []}] * 2,
        [{"id": f"v_{i}", "fields": []} for i in range(51)],
    ):
        response = client.request("POST", "/vaults/decrypt", json_body={"reason": "r", "vaults": vaults})
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "ValidationError"


# -- a reveal policy ---------------------------------------------------------------------------

POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {
            "id": "support",
            "principals": ["arn:aws:iam::*:role/vault-support"],
            "fields": ["first_name", "ssn4"],
        }
    ],
}


@pytest.fixture(scope="module")
def policy_stack(stack: EmulatorState, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorState]:
    root = tmp_path_factory.mktemp("emulator-batch-policy")
    policy = root / "reveal-policy.json"
    policy.write_text(json.dumps(POLICY))
    config = EmulatorConfig(
        state_dir=root / "state",
        backend=stack.backend,  # type: ignore[arg-type]
        enclave_runtime=stack.enclave_runtime,  # type: ignore[arg-type]
        port=0,
        sigv4=True,
        reveal_policy=policy,
    )
    started = lifecycle.up(config)
    try:
        yield started
    finally:
        lifecycle.down(config.layout)


def test_one_vault_refused_by_the_policy_does_not_stop_the_others(policy_stack: EmulatorState) -> None:
    (principal,) = [p for p in policy_stack.facts["sigv4_principals"] if "vault-support" in p["arn"]]
    signer = SigV4Signer(
        principal["access_key_id"], principal["secret_access_key"], policy_stack.facts["region"]
    )
    with VaultClient(policy_stack.api_url, signer=signer) as support:
        ann, bob, _ = _created(support)
        results = support.decrypt_batch(
            [{"id": ann, "fields": ["first_name", "ssn4"]}, {"id": bob, "fields": ["first_name", "ssn9"]}],
            reason="ticket 12",
        )
        allowed, refused = results
        assert allowed["data"] == {"first_name": "Batch Ann", "ssn4": "3333"}
        assert (refused["error"]["status"], refused["error"]["code"]) == (403, "RevealNotAllowed")
        assert refused["error"]["fields"] == ["ssn9"] and "data" not in refused
        assert "Batch Bob" not in json.dumps(results)
        (record,) = _decrypt_events(support, bob)
        assert record["outcome"] == "RevealNotAllowed"
        assert "vault-support" in record["principal"]


# -- the batch route attacked directly -------------------------------------------------------


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
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        facts = state.facts

        def backend(service: str) -> Any:
            endpoint = facts["dynamodb_endpoint"] if service == "dynamodb" else facts["backend_endpoint"]
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=facts["region"],
                aws_access_key_id=facts["backend_access_key_id"],
                aws_secret_access_key=facts["backend_secret_access_key"],
            )

        self.dynamodb = backend("dynamodb")
        self.api_key = BackendSigner(backend("kms"), str(facts["authorizer_key_arn"]))

    def request_body(self, vault_id: str, fields: list[str]) -> dict[str, Any]:
        """The decrypt request the API would send for ``vault_id``, built from the raw table item."""
        facts = self.state.facts
        item = self.dynamodb.get_item(
            TableName=str(facts["table_name"]), Key=vault_key(vault_id), ConsistentRead=True
        )["Item"]
        return {
            "vault_id": vault_id,
            "region": str(facts["region"]),
            "fields": {name: base64.b64encode(bytes(item[name]["B"])).decode() for name in fields},
            "suite_id": base64.b64encode(bytes(item["_hs"]["B"])).decode(),
            "encrypted_private_key": base64.b64encode(bytes(item["_sk"]["B"])).decode(),
            "encoding": str(item["_v"]["N"]),
        }

    def via_parent(self, requests_: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = requests.post(
            f"{self.state.facts['parent_url']}/decrypt/batch", json={"requests": requests_}, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        replies: list[dict[str, Any]] = response.json()["replies"]
        return replies

    def via_enclave(self, requests_: list[dict[str, Any]]) -> list[dict[str, Any]]:
        credentials = asyncio.run(ImdsClient(str(self.state.facts["imds_endpoint"])).fetch())
        transport = UnixSocketTransport(self.state.layout.vsock_dir, local_cid=PARENT_CID)
        with transport.connect(DEFAULT_ENCLAVE_CID, ENCLAVE_PORT, TIMEOUT) as sock:
            write_json(sock, {"batch": requests_, "credential": credentials.credential.to_wire()})
            reply: dict[str, Any] = read_json(sock, deadline=time.monotonic() + TIMEOUT)
        replies: list[dict[str, Any]] = reply["replies"]
        return replies


def _authorized(body: dict[str, Any], signer: Any) -> dict[str, Any]:
    grant = Grant.for_request(
        vault_id=body["vault_id"],
        fields=list(body["fields"]),
        expressions={},
        request_id=str(uuid.uuid4()),
        issued_at=int(time.time()),
    )
    return {**body, "authorization": sign(grant, signer).to_wire().model_dump()}


@pytest.fixture
def attacker(stack: EmulatorState) -> Attacker:
    return Attacker(stack)


def _no_plaintext(replies: list[dict[str, Any]], detail: str) -> None:
    for reply in replies:
        assert "fields" not in reply or not reply["fields"], reply
        assert detail in str(reply), reply
    text = json.dumps(replies)
    assert not any(value in text for value in PLAINTEXTS)


PATHS = ["via_parent", "via_enclave"]


@pytest.mark.parametrize("path", PATHS)
def test_genuine_exact_authorizations_open_the_batch(
    client: VaultClient, attacker: Attacker, path: str
) -> None:
    """The control: the same direct batch, each entry signed for itself with the API's key."""
    ann, bob, _ = _created(client)
    batch = [_authorized(attacker.request_body(vault, ["ssn9"]), attacker.api_key) for vault in (ann, bob)]
    replies = getattr(attacker, path)(batch)
    assert [reply.get("fields") for reply in replies] == [{"ssn9": "111223333"}, {"ssn9": "444556666"}]


@pytest.mark.parametrize("path", PATHS)
def test_table_items_without_authorizations_give_no_plaintext(
    client: VaultClient, attacker: Attacker, path: str
) -> None:
    vaults = _created(client)
    batch = [attacker.request_body(vault, ["ssn9", "first_name"]) for vault in vaults]
    _no_plaintext(getattr(attacker, path)(batch), "AuthorizationMissing")


@pytest.mark.parametrize("path", PATHS)
def test_forged_authorizations_give_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    """Signed well, by the attacker's own key: the vault keys are bound to the API's, KMS refuses."""
    forger = LocalSigner()
    batch = [_authorized(attacker.request_body(vault, ["ssn9"]), forger) for vault in _created(client)]
    _no_plaintext(getattr(attacker, path)(batch), "KeyDecryptFailed")


@pytest.mark.parametrize("path", PATHS)
def test_swapped_authorizations_give_no_plaintext(client: VaultClient, attacker: Attacker, path: str) -> None:
    """Genuine authorizations, each moved to the other entry: both refused."""
    ann, bob, _ = _created(client)
    first, second = (
        _authorized(attacker.request_body(vault, ["ssn9"]), attacker.api_key) for vault in (ann, bob)
    )
    first["authorization"], second["authorization"] = second["authorization"], first["authorization"]
    _no_plaintext(getattr(attacker, path)([first, second]), "AuthorizationMismatch")


def test_an_entry_without_authorization_beside_an_authorized_one(
    client: VaultClient, attacker: Attacker
) -> None:
    ann, bob, _ = _created(client)
    authorized = _authorized(attacker.request_body(ann, ["ssn9"]), attacker.api_key)
    bare = attacker.request_body(bob, ["ssn9"])
    opened, refused = attacker.via_parent([authorized, bare])
    assert opened["fields"] == {"ssn9": "111223333"}
    _no_plaintext([refused], "AuthorizationMissing")


def test_the_parents_batch_body_sent_to_the_api_is_refused(stack: EmulatorState) -> None:
    """The API refuses a body that is the parent's, not its own: nothing is decrypted or audited."""
    with VaultClient(stack.api_url) as api:
        vault = api.create(PEOPLE[0])
        response = api.request(
            "POST", "/vaults/decrypt", json_body={"requests": [{"vault_id": vault}], "reason": "x"}
        )
        assert response.status_code == 422
        assert _decrypt_events(api, vault) == []
