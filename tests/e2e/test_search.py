"""Search by blind-index token on the running emulator: the same route, table and enclave as deployed.

Vaults with equal and different SSNs; a search finds exactly the matching ids; the item
holds a token, not a digest of the SSN; the audit has ``SearchVaults`` without the value.
Then the attack that keyed tokens exist to stop: someone in the VPC reads the index key
item from the table, seals SSN guesses to its public key and asks the parent for tokens
(to compare with the table's). Unsigned, signed by their own key, or carrying a genuine
API signature of another operation, the request gets no token. A genuine index signature
(made through the backend, which no one in the VPC can reach) does, so the refusals are
about the authorization and not a broken setup. CEL's ``hmac_sha256(ssn9, "ssn9")`` in a
decrypt answers the token stored for the vault.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from emulator.daemon.state import EmulatorState
from emulator.tools.client import VaultClient
from tests.support.authorization import LocalSigner
from vault.common import hpke
from vault.common.authorization import SIGNING_ALGORITHM, Grant, Signer, sign
from vault.common.blind_index import INDEX_KEY_ID, TOKEN_PATTERN, sealed_digest
from vault.common.suites import suite_from_id
from vault.infra.table import config_key, log_partition, vault_key

pytestmark = pytest.mark.e2e

SSN = "246813579"
OTHER_SSN = "975318642"
TIMEOUT = 30.0


class BackendSigner:
    """The API's authorizer key through the backend: a stand-in for the API's own role."""

    def __init__(self, kms: Any, key_arn: str) -> None:
        self._kms = kms
        self._key_arn = key_arn
        self.public_key = bytes(kms.get_public_key(KeyId=key_arn)["PublicKey"])

    def sign(self, message: bytes) -> bytes:
        reply = self._kms.sign(
            KeyId=self._key_arn, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        )
        return bytes(reply["Signature"])


def _backend(stack: EmulatorState, service: str) -> Any:
    facts = stack.facts
    return boto3.client(
        service,
        endpoint_url=facts["dynamodb_endpoint"] if service == "dynamodb" else facts["backend_endpoint"],
        region_name=facts["region"],
        aws_access_key_id=facts["backend_access_key_id"],
        aws_secret_access_key=facts["backend_secret_access_key"],
    )


@pytest.fixture(scope="module")
def dynamodb(stack: EmulatorState) -> Any:
    return _backend(stack, "dynamodb")


def _search(client: VaultClient, value: str, field: str = "ssn9") -> requests.Response:
    body = {"field": field, "value": value, "reason": "e2e duplicate check"}
    return client.request("POST", "/vaults/search", json_body=body)


def _search_ids(client: VaultClient, value: str, expected: list[str]) -> list[str]:
    """The ids found, waiting for the token index (eventually consistent) to catch up."""
    deadline = time.monotonic() + 10
    while True:
        response = _search(client, value)
        assert response.status_code == 200, response.text
        ids: list[str] = response.json()["ids"]
        if sorted(ids) == sorted(expected) or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


@pytest.fixture(scope="module")
def vaults(stack: EmulatorState) -> Iterator[dict[str, str]]:
    with VaultClient(stack.api_url) as api:
        yield {
            "first": api.create({"ssn9": SSN, "first_name": "Search"}),
            "second": api.create({"ssn9": SSN, "email": "search@example.com"}),
            "other": api.create({"ssn9": OTHER_SSN}),
        }


def test_a_search_finds_exactly_the_matching_vaults(client: VaultClient, vaults: dict[str, str]) -> None:
    matching = sorted([vaults["first"], vaults["second"]])
    assert sorted(_search_ids(client, SSN, matching)) == matching
    assert _search_ids(client, OTHER_SSN, [vaults["other"]]) == [vaults["other"]]
    response = _search(client, "SEARCH@example.com", field="email")
    assert response.json()["ids"] == [vaults["second"]]


def test_the_item_holds_a_keyed_token(stack: EmulatorState, dynamodb: Any, vaults: dict[str, str]) -> None:
    item = dynamodb.get_item(TableName=stack.facts["table_name"], Key=vault_key(vaults["first"]))["Item"]
    token = item["_ix_ssn9"]["S"]
    assert TOKEN_PATTERN.fullmatch(token)
    digest = hashlib.sha256(SSN.encode()).digest()
    assert token not in (digest.hex(), base64.urlsafe_b64encode(digest).decode().rstrip("="))
    assert SSN not in json.dumps(item, default=str)


def test_the_search_is_audited_without_the_value(
    stack: EmulatorState, client: VaultClient, dynamodb: Any, vaults: dict[str, str]
) -> None:
    _search_ids(client, SSN, [vaults["first"], vaults["second"]])
    items = dynamodb.query(
        TableName=stack.facts["table_name"],
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": log_partition("search")}},
        ConsistentRead=True,
    )["Items"]
    assert items and all(item["_e"]["S"] == "SearchVaults" for item in items)
    assert {item["_o"]["S"] for item in items} == {"Success"}
    assert all([entry["S"] for entry in item["_f"]["L"]] in (["ssn9"], ["email"]) for item in items)
    text = json.dumps(items, default=str)
    assert SSN not in text and OTHER_SSN not in text and "search@example.com" not in text.lower()


# -- the oracle attack ----------------------------------------------------------------------


def _index_request(stack: EmulatorState, dynamodb: Any, guess: str) -> dict[str, Any]:
    """What an attacker builds from the table: the guess sealed to the index public key."""
    item = dynamodb.get_item(
        TableName=stack.facts["table_name"], Key=config_key(INDEX_KEY_ID), ConsistentRead=True
    )["Item"]
    suite_id = bytes(item["_hs"]["B"])
    suite = suite_from_id(suite_id)
    public_key = hpke.load_public_key(suite, bytes(item["_pk"]["B"]))
    enc, ct = hpke.seal(suite, public_key, INDEX_KEY_ID.encode(), b"ssn9", guess.encode())
    fields = {"ssn9": base64.b64encode(enc + ct).decode()}
    return {
        "vault_id": INDEX_KEY_ID,
        "region": stack.facts["region"],
        "fields": fields,
        "suite_id": base64.b64encode(suite_id).decode(),
        "encrypted_private_key": base64.b64encode(bytes(item["_sk"]["B"])).decode(),
        "encoding": "2",
        "operation": "index",
        "parameters": {
            "deployment": item["_d"]["S"],
            "target": "search",
            "sealed_sha256": sealed_digest(fields),
        },
    }


def _signed(body: dict[str, Any], signer: Signer, *, operation: str = "index") -> dict[str, Any]:
    grant = Grant.for_request(
        vault_id=body["vault_id"],
        fields=list(body["fields"]),
        expressions={},
        request_id=str(uuid.uuid4()),
        issued_at=int(time.time()),
        operation=operation,
        parameters=body["parameters"] if operation == "index" else None,
    )
    return {**body, "authorization": sign(grant, signer).to_wire().model_dump()}


def _ask_parent(stack: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{stack.facts['parent_url']}/decrypt", json=body, timeout=TIMEOUT)
    reply: dict[str, Any] = response.json()
    return reply


def test_the_enclave_is_no_token_oracle(
    stack: EmulatorState, client: VaultClient, dynamodb: Any, vaults: dict[str, str]
) -> None:
    _search_ids(client, SSN, [vaults["first"], vaults["second"]])
    body = _index_request(stack, dynamodb, SSN)
    api_key = BackendSigner(_backend(stack, "kms"), str(stack.facts["authorizer_key_arn"]))
    for attempt, expected in (
        (body, "must be authorized"),
        (_signed(body, LocalSigner()), "KeyDecryptFailed"),
        (_signed(body, api_key, operation="decrypt"), "Unauthorized"),
    ):
        reply = _ask_parent(stack, attempt)
        assert not reply.get("fields"), reply
        assert expected in json.dumps(reply), reply
    # A genuine index signature gets the token the table holds: the refusals above are real.
    reply = _ask_parent(stack, _signed(body, api_key))
    item = dynamodb.get_item(TableName=stack.facts["table_name"], Key=vault_key(vaults["first"]))["Item"]
    assert reply.get("fields") == {"ssn9": item["_ix_ssn9"]["S"]}, reply


def test_cel_hmac_sha256_is_the_stored_token(
    stack: EmulatorState, client: VaultClient, dynamodb: Any, vaults: dict[str, str]
) -> None:
    vault_id = vaults["second"]
    body = {
        "fields": ["ssn9", "email"],
        "reason": "e2e link records",
        "expressions": {"t": 'hmac_sha256(ssn9, "ssn9")', "e": 'hmac_sha256(email, "email")'},
    }
    response = client.request("POST", f"/vaults/{vault_id}/decrypt", json_body=body)
    assert response.status_code == 200, response.text
    item = dynamodb.get_item(TableName=stack.facts["table_name"], Key=vault_key(vault_id))["Item"]
    data = response.json()["data"]
    assert (data["t"], data["e"]) == (item["_ix_ssn9"]["S"], item["_ix_email"]["S"])
