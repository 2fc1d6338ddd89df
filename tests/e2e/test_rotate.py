"""``POST /vaults/{id}/rotate`` on the running emulator: the gateway, the parent, the sandboxed enclave.

A rotation keeps every value, replaces the key pair and every ciphertext, and leaves no
copy of the old encrypted private key in the item. A PATCH racing it makes it 409 and
the vault stays decryptable in one consistent state. An attacker with the parent's
``POST /decrypt`` and a genuine API authorization for another request gets no fields.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from e2e.security.targets import VaultTarget
from emulator.daemon.state import EmulatorState
from emulator.tools.client import VaultApiError, VaultClient
from vault.common import rotation
from vault.common.authorization import SIGNING_ALGORITHM, Grant, sign
from vault.common.suites import DEFAULT_SUITE
from vault.infra.table import vault_key

pytestmark = pytest.mark.e2e

NEEDS = "the emulator's backend table, its KMS and the parent's port"
PERSON = {
    "first_name": "Rota Firstname",
    "last_name": "Rota Lastname",
    "email": "rota@example.com",
    "ssn9": "123454321",
    "dob": "1980-02-03",
}
STORED = {**PERSON, "ssn4": "4321"}
#: Values too long to occur by chance in base64 ciphertext text (ssn4 could).
LONG_VALUES = [value for value in STORED.values() if len(value) >= 8]
TIMEOUT = 30.0
#: Attempts at catching a PATCH inside a rotation's read-to-write window.
RACE_ATTEMPTS = 10


class Backend:
    """The emulator's table and the API's authorizer key, reached as the API's own role would."""

    def __init__(self, stack: EmulatorState) -> None:
        target = VaultTarget(f"{stack.backend}/{stack.enclave_runtime}", stack.api_url, None, stack)
        self.facts = stack.facts
        self.dynamodb = target.backend_client("dynamodb", NEEDS)
        self.kms = target.backend_client("kms", NEEDS)
        self.key_arn = str(self.facts["authorizer_key_arn"])
        self.public_key = bytes(self.kms.get_public_key(KeyId=self.key_arn)["PublicKey"])

    def item(self, vault_id: str) -> dict[str, Any]:
        reply = self.dynamodb.get_item(
            TableName=str(self.facts["table_name"]), Key=vault_key(vault_id), ConsistentRead=True
        )
        item: dict[str, Any] = reply["Item"]
        return item

    def sign(self, message: bytes) -> bytes:
        reply = self.kms.sign(
            KeyId=self.key_arn, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
        )
        return bytes(reply["Signature"])


@pytest.fixture(scope="module")
def backend(stack: EmulatorState) -> Backend:
    return Backend(stack)


def _all_values(item: dict[str, Any]) -> bytes:
    return b"".join(bytes(value["B"]) for value in item.values() if "B" in value)


def test_rotation_keeps_the_values_and_replaces_the_key_and_every_ciphertext(
    client: VaultClient, backend: Backend
) -> None:
    vault_id = client.create(PERSON)
    before = backend.item(vault_id)
    assert client.rotate(vault_id, reason="e2e rotation") == DEFAULT_SUITE.name
    after = backend.item(vault_id)
    for attribute in ("_pk", "_sk", *STORED):
        assert after[attribute] != before[attribute], attribute
    # The old encrypted private key is nowhere in the item.
    assert bytes(before["_sk"]["B"]) not in _all_values(after)
    assert client.decrypt(vault_id, list(STORED), reason="after rotation").data == STORED
    trail = client.audit_trail(vault_id)
    (rotated,) = [entry for entry in trail if entry.event == "RotateVault"]
    assert (rotated.outcome, rotated.reason) == ("Success", "e2e rotation")
    assert sorted(rotated.fields) == sorted(STORED)
    # Writes after the rotation are sealed to the new key.
    client.update(vault_id, {"email": "after@example.com"})
    assert client.decrypt(vault_id, ["email"], reason="after").data == {"email": "after@example.com"}


def test_a_patch_during_the_rotation_makes_it_409_and_the_vault_stays_consistent(
    client: VaultClient, stack: EmulatorState
) -> None:
    vault_id = client.create(PERSON)
    last_written = PERSON["email"]
    rotation_statuses: list[int] = []
    for attempt in range(RACE_ATTEMPTS):  # bounded: each attempt is one rotation
        outcome: list[int] = []

        def rotate() -> None:
            with VaultClient(stack.api_url) as own:
                try:
                    own.rotate(vault_id, reason=f"race {attempt}")
                    outcome.append(200)
                except VaultApiError as exc:
                    assert exc.code == "TransactionCancelled", exc
                    outcome.append(exc.status)

        worker = threading.Thread(target=rotate)
        worker.start()
        writes = 0
        while worker.is_alive() and writes < 200:  # bounded: PATCHes while the rotation runs
            value = f"race{attempt}-{writes}@example.com"
            try:
                client.update(vault_id, {"email": value})
                last_written = value
            except VaultApiError as exc:
                # The PATCH sealed to the key a rotation has just replaced: refused, nothing written.
                assert (exc.status, exc.code) == (409, "TransactionCancelled"), exc
            writes += 1
        worker.join(TIMEOUT)
        assert not worker.is_alive()
        rotation_statuses.extend(outcome)
        # One consistent state: every field opens under the vault's one key, the last PATCH kept.
        result = client.decrypt(vault_id, list(STORED), reason="consistency")
        assert result.errors == []
        assert result.data == {**STORED, "email": last_written}
        if 409 in rotation_statuses:
            break
    assert 409 in rotation_statuses, rotation_statuses
    outcomes = [entry.outcome for entry in client.audit_trail(vault_id) if entry.event == "RotateVault"]
    assert "TransactionCancelled" in outcomes
    assert "Pending" not in outcomes


def _request_body(backend: Backend, vault_id: str) -> dict[str, Any]:
    """The rotate request the API would send, built from the raw item, with the attacker's own key."""
    item = backend.item(vault_id)
    own = ec.generate_private_key(DEFAULT_SUITE.kem_params.curve())
    own_public = own.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    _, reply_key = rotation.new_reply_key(DEFAULT_SUITE)
    return {
        "vault_id": vault_id,
        "region": str(backend.facts["region"]),
        "fields": {name: base64.b64encode(bytes(item[name]["B"])).decode() for name in STORED},
        "suite_id": base64.b64encode(bytes(item["_hs"]["B"])).decode(),
        "encrypted_private_key": base64.b64encode(bytes(item["_sk"]["B"])).decode(),
        "encoding": str(item["_v"]["N"]),
        "operation": rotation.ROTATE_OPERATION,
        "parameters": {
            rotation.NEW_PUBLIC_KEY: base64.b64encode(own_public).decode(),
            rotation.NEW_SUITE_ID: DEFAULT_SUITE.suite_id_b64,
            rotation.REPLY_KEY: reply_key,
        },
    }


def _signed(body: dict[str, Any], backend: Backend, **grant: Any) -> dict[str, Any]:
    signed = sign(
        Grant.for_request(
            vault_id=body["vault_id"],
            fields=list(body["fields"]),
            expressions={},
            request_id=str(uuid.uuid4()),
            issued_at=int(time.time()),
            **grant,
        ),
        backend,
    )
    return {**body, "authorization": signed.to_wire().model_dump()}


def _via_parent(backend: Backend, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{backend.facts['parent_url']}/decrypt", json=body, timeout=TIMEOUT)
    reply: dict[str, Any] = response.json()
    return reply


def _assert_no_fields(reply: dict[str, Any], detail: str) -> None:
    assert not reply.get("fields"), reply
    text = str(reply)
    for value in LONG_VALUES:
        assert value not in text
    assert detail in text, reply


def test_a_rotate_request_with_a_decrypt_authorization_gets_no_fields(
    client: VaultClient, backend: Backend
) -> None:
    """A genuine API signature of a decrypt of these fields, sent as a rotation to the attacker's key."""
    vault_id = client.create(PERSON)
    body = _request_body(backend, vault_id)
    _assert_no_fields(_via_parent(backend, _signed(body, backend)), "another operation")


def test_a_rotate_grant_for_another_public_key_gets_no_fields(client: VaultClient, backend: Backend) -> None:
    """The API signed a rotation to its new key; the parent swaps in its own."""
    vault_id = client.create(PERSON)
    body = _request_body(backend, vault_id)
    genuine = dict(body["parameters"])
    genuine[rotation.NEW_PUBLIC_KEY] = base64.b64encode(bytes(backend.item(vault_id)["_pk"]["B"])).decode()
    signed = _signed(body, backend, operation=rotation.ROTATE_OPERATION, parameters=genuine)
    _assert_no_fields(_via_parent(backend, signed), "other parameters")


def test_the_control_an_exact_rotate_grant_reseals(client: VaultClient, backend: Backend) -> None:
    """The same direct call with the API key's signature of exactly it is answered (ciphertexts only).

    The signature is made through the backend, standing in for the API's role, which no one
    in the VPC holds: the refusals above are for the reasons tested, not a broken setup.
    """
    vault_id = client.create(PERSON)
    body = _request_body(backend, vault_id)
    signed = _signed(body, backend, operation=rotation.ROTATE_OPERATION, parameters=body["parameters"])
    reply = _via_parent(backend, signed)
    assert set(reply.get("fields") or {}) == {*STORED, rotation.PROOF_KEY}, reply
    for value in LONG_VALUES:
        assert value not in str(reply)
