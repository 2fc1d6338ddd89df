"""``POST /vaults/{id}/rotate``: every field re-sealed under a new key pair in one write, or nothing.

Runs the real handler on moto with the project's enclave request handler behind the
parent double. The races are made deterministic by parent stand-ins that write to the
vault while the rotation waits for the enclave, and by a store read that lets a
rotation slip in between a PATCH's read and its write.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.enclave_keys import encode_hex
from unit.api.doubles import Reply, Responder, canned, enclave_parent, raising
from unit.api.events import ApiResponse, invoke, rest_event
from unit.api.harness import ApiHarness, api_harness, open_stored_field
from vault.api.reveal_policy import RevealPolicy
from vault.api.store import storage_error
from vault.common import rotation
from vault.common.sealing import seal_field
from vault.common.suites import DEFAULT_SUITE
from vault.enclave.encoding import SealedValue

PERSON = {
    "first_name": "Annabel Rotation",
    "last_name": "Leeward Rotation",
    "email": "ann@example.com",
    "ssn9": "123450987",
}
STORED = {**PERSON, "ssn4": "0987"}
ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/KeyAdmin/alice"
BODY = {"reason": "scheduled rotation"}
KEY_ATTRIBUTES = ("_pk", "_sk", "_hs", "_v", "_mt")


def _rotate(
    api: ApiHarness, vault_id: str, body: Any = BODY, principal: str | None = ROLE_ARN
) -> ApiResponse:
    event = rest_event("POST", f"/vaults/{vault_id}/rotate", body=body)
    if principal is not None:
        event["requestContext"]["identity"].update({"userArn": principal, "accountId": "123456789012"})
    return invoke(event)


def _decrypt(api: ApiHarness, vault_id: str, names: Any = tuple(STORED)) -> dict[str, Any]:
    response = api.call(
        "POST", f"/vaults/{vault_id}/decrypt", body={"fields": list(names), "reason": "check"}
    )
    assert response.status == 200, response.text
    assert response.json["errors"] == []
    data: dict[str, Any] = response.json["data"]
    return data


def _rotations(api: ApiHarness, vault_id: str) -> list[dict[str, Any]]:
    return [item for item in api.audit_items(vault_id) if item["_e"]["S"] == "RotateVault"]


def _item(api: ApiHarness, vault_id: str) -> dict[str, Any]:
    item = api.vault_item(vault_id)
    assert item is not None
    return item


def _assert_no_plaintext(*texts: str) -> None:
    for text in texts:
        # Short values (ssn4) occur in base64 ciphertext text by chance; the long ones cannot.
        for value in (value for value in STORED.values() if len(value) >= 8):
            assert value not in text


# -- the rotation ------------------------------------------------------------------------


def test_rotation_replaces_the_key_and_every_ciphertext(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    response = _rotate(api, vault_id)
    assert (response.status, response.json) == (200, {"id": vault_id, "suite": DEFAULT_SUITE.name})
    after = _item(api, vault_id)
    for attribute in ("_pk", "_sk", *STORED):
        assert after[attribute] != before[attribute], attribute
    assert after["_v"] == {"N": "2"}
    assert int(after["_mt"]["N"]) > int(before["_mt"]["N"])
    assert after["_ct"] == before["_ct"]
    # Nothing in the item is the old key any more.
    assert (
        bytes(before["_sk"]["B"])
        not in json.dumps(after, default=lambda b: base64.b64encode(b).decode()).encode()
    )
    assert _decrypt(api, vault_id) == STORED
    # Opened independently of the enclave: KMS's copy of the new key opens the new ciphertexts.
    assert {name: open_stored_field(api, vault_id, name) for name in STORED} == STORED
    _assert_no_plaintext(response.text)


def test_the_request_sent_to_the_parent_carries_ciphertexts_and_signed_parameters(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    assert _rotate(api, vault_id).status == 200
    sent = api.parent.sent[-1]
    body = sent.body
    assert body["operation"] == rotation.ROTATE_OPERATION
    assert set(body["parameters"]) == set(rotation.PARAMETERS)
    assert body["parameters"][rotation.NEW_SUITE_ID] == DEFAULT_SUITE.suite_id_b64
    assert base64.b64decode(body["parameters"][rotation.NEW_PUBLIC_KEY]) == bytes(
        _item(api, vault_id)["_pk"]["B"]
    )
    assert body["fields"] == {name: base64.b64encode(bytes(before[name]["B"])).decode() for name in STORED}
    assert "expressions" not in body
    _assert_no_plaintext(json.dumps(body))


def test_the_audit_record_is_pending_before_the_parent_is_asked(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    seen: list[list[dict[str, Any]]] = []
    inner = enclave_parent(api.enclave)

    def respond(body: dict[str, Any]) -> Reply:
        seen.append(copy.deepcopy(_rotations(api, vault_id)))
        return inner(body)

    api.respond_with(respond)
    assert _rotate(api, vault_id).status == 200
    ((pending,),) = seen
    assert pending["_o"] == {"S": "Pending"}
    assert pending["_p"] == {"S": ROLE_ARN}
    assert pending["_r"] == {"S": "scheduled rotation"}
    assert sorted(entry["S"] for entry in pending["_f"]["L"]) == sorted(STORED)
    (done,) = _rotations(api, vault_id)
    assert (done["sk"], done["_o"], done["_q"]) == (pending["sk"], {"S": "Success"}, pending["_q"])
    event = api.call("GET", f"/vaults/{vault_id}/audit").json["events"][0]
    assert (event["event"], event["outcome"], event["principal"]) == ("RotateVault", "Success", ROLE_ARN)


def test_a_failed_pending_write_means_no_parent_call(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    sent = len(api.parent.sent)

    def failing_commit(txn: Any) -> None:
        raise storage_error()

    monkeypatch.setattr(api.service.store, "commit", failing_commit)
    assert _rotate(api, vault_id).status == 500
    assert len(api.parent.sent) == sent
    assert _item(api, vault_id) == before


def test_rotating_twice_keeps_the_values(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    keys = {bytes(_item(api, vault_id)["_pk"]["B"])}
    for _ in range(2):
        assert _rotate(api, vault_id).status == 200
        keys.add(bytes(_item(api, vault_id)["_pk"]["B"]))
    assert len(keys) == 3
    assert _decrypt(api, vault_id) == STORED


def test_a_legacy_hex_vault_is_rotated_to_the_binary_encoding(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann", "last_name": "Lee"})
    item = _item(api, vault_id)
    raw = bytes(item["first_name"]["B"])
    legacy = encode_hex(SealedValue(raw[: DEFAULT_SUITE.n_enc], raw[DEFAULT_SUITE.n_enc :]))
    api.dynamodb.update_item(
        TableName=api.service.store.table_name,
        Key={"pk": item["pk"], "sk": item["sk"]},
        UpdateExpression="SET first_name = :hex, #v = :one",
        ExpressionAttributeNames={"#v": "_v"},
        ExpressionAttributeValues={":hex": {"S": legacy}, ":one": {"N": "1"}},
    )
    assert _rotate(api, vault_id).status == 200
    assert api.parent.sent[-1].body["fields"]["first_name"] == legacy
    after = _item(api, vault_id)
    assert after["_v"] == {"N": "2"}
    assert set(after["first_name"]) == {"B"}
    assert _decrypt(api, vault_id, ["first_name", "last_name"]) == {"first_name": "Ann", "last_name": "Lee"}


def test_a_vault_without_fields_rotates_without_asking_the_parent(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["first_name"]}).status == 200
    before = _item(api, vault_id)
    sent = len(api.parent.sent)
    assert _rotate(api, vault_id).status == 200
    assert len(api.parent.sent) == sent
    assert _item(api, vault_id)["_pk"] != before["_pk"]
    (record,) = _rotations(api, vault_id)
    assert record["_o"] == {"S": "Success"}
    # Fields written after the rotation are sealed to the new key and decrypt.
    assert api.call("PATCH", f"/vaults/{vault_id}", body={"email": "new@example.com"}).status == 200
    assert _decrypt(api, vault_id, ["email"]) == {"email": "new@example.com"}


# -- refusals that change nothing --------------------------------------------------------


def test_a_missing_vault_is_404_and_writes_nothing(api: ApiHarness) -> None:
    response = _rotate(api, "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL")
    assert (response.status, response.json["code"]) == (404, "VaultNotFound")
    assert api.items() == []
    assert api.parent.sent == []


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({}, "missing"),
        ({"reason": "r", "suite": "P256_SHA256_AES256GCM"}, "rotation_suite"),
        ({"reason": "r", "suite": "nonsense"}, "rotation_suite"),
        ({"reason": "r", "suite": None}, "null_not_allowed"),
        ({"reason": "r", "fields": ["email"]}, "extra_forbidden"),
        ({"reason": "x" * 1025}, "string_too_long"),
    ],
    ids=["no-reason", "suite-on-another-curve", "unknown-suite", "null-suite", "extra-key", "long-reason"],
)
def test_invalid_bodies_are_422_before_anything_happens(
    api: ApiHarness, body: dict[str, Any], rule: str
) -> None:
    vault_id = api.create(PERSON)
    before = api.items()
    response = _rotate(api, vault_id, body=body)
    assert response.status == 422, response.text
    assert rule in {problem["type"] for problem in response.json["errors"]}
    assert api.items() == before


def test_the_suite_can_be_named(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    response = _rotate(api, vault_id, body={"reason": "r", "suite": DEFAULT_SUITE.name})
    assert (response.status, response.json["suite"]) == (200, DEFAULT_SUITE.name)
    assert _decrypt(api, vault_id) == STORED


def test_a_field_that_does_not_open_fails_the_rotation_and_changes_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    item = _item(api, vault_id)
    # A ciphertext moved from another field: authentic, but bound to another name.
    api.dynamodb.update_item(
        TableName=api.service.store.table_name,
        Key={"pk": item["pk"], "sk": item["sk"]},
        UpdateExpression="SET email = :moved",
        ExpressionAttributeValues={":moved": item["first_name"]},
    )
    before = _item(api, vault_id)
    response = _rotate(api, vault_id)
    assert response.status == 502
    assert (response.json["code"], response.json["enclaveCode"]) == (
        "EnclaveDecryptFailed",
        "InvalidCiphertext",
    )
    assert _item(api, vault_id) == before
    (record,) = _rotations(api, vault_id)
    assert record["_o"] == {"S": "EnclaveDecryptFailed"}


def test_a_parent_timeout_is_unknown_and_changes_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    api.respond_with(raising(requests.ReadTimeout("read timed out")))
    response = _rotate(api, vault_id)
    assert (response.status, response.json["code"]) == (504, "ParentTimeout")
    assert _item(api, vault_id) == before
    (record,) = _rotations(api, vault_id)
    assert (record["_o"], record["_c"]) == ({"S": "Unknown"}, {"S": "ParentTimeout"})


def test_key_generation_failure_is_502_audited_and_changes_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    api.kms.failure = "KMSInvalidStateException"
    response = _rotate(api, vault_id)
    assert (response.status, response.json["code"]) == (502, "KeyGenerationFailed")
    assert _item(api, vault_id) == before
    assert api.parent.sent == []
    (record,) = _rotations(api, vault_id)
    assert record["_o"] == {"S": "KeyGenerationFailed"}


# -- a parent that rewrites the answer ---------------------------------------------------


def _tampering(api: ApiHarness, change: Any) -> Responder:
    inner = enclave_parent(api.enclave)

    def respond(body: dict[str, Any]) -> Reply:
        reply = inner(body)
        assert not isinstance(reply, Exception)
        status, payload = reply
        return status, {**payload, "fields": change(body, dict(payload["fields"]))}

    return respond


def _planted(body: dict[str, Any], fields: dict[str, str]) -> dict[str, str]:
    """A value of the parent's choosing, sealed to the new public key it read in the request."""
    new_key = base64.b64decode(body["parameters"][rotation.NEW_PUBLIC_KEY])
    value = seal_field(DEFAULT_SUITE, new_key, body["vault_id"], "email", b"attacker@evil.test")
    return {**fields, "email": base64.b64encode(value).decode()}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_planted, id="planted-value"),
        pytest.param(
            lambda body, fields: {k: v for k, v in fields.items() if k != "email"}, id="dropped-field"
        ),
        pytest.param(lambda body, fields: {**fields, "email": fields["first_name"]}, id="swapped-field"),
        pytest.param(lambda body, fields: {k: v for k, v in fields.items() if k != "_proof"}, id="no-proof"),
        pytest.param(lambda body, fields: {**fields, "dob": fields["first_name"]}, id="extra-field"),
        pytest.param(
            lambda body, fields: dict.fromkeys(fields, base64.b64encode(b"x").decode()), id="garbage"
        ),
    ],
)
def test_a_rewritten_answer_is_refused_and_nothing_is_stored(api: ApiHarness, change: Any) -> None:
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    api.respond_with(_tampering(api, change))
    response = _rotate(api, vault_id)
    assert (response.status, response.json["code"]) == (502, "RotationProofInvalid")
    assert _item(api, vault_id) == before
    (record,) = _rotations(api, vault_id)
    assert record["_o"] == {"S": "RotationProofInvalid"}
    api.respond_with(enclave_parent(api.enclave))
    assert _decrypt(api, vault_id) == STORED


def test_a_plaintext_answer_is_refused(api: ApiHarness) -> None:
    """A parent that answers like a decrypt (plaintext values) gets nothing stored."""
    vault_id = api.create(PERSON)
    before = _item(api, vault_id)
    api.respond_with(canned(200, {"fields": STORED, "errors": []}))
    response = _rotate(api, vault_id)
    assert (response.status, response.json["code"]) == (502, "RotationProofInvalid")
    assert _item(api, vault_id) == before
    _assert_no_plaintext(response.text)


# -- concurrent writes -------------------------------------------------------------------


def _writing_during_rotation(api: ApiHarness, method: str, path: str, body: Any) -> list[int]:
    """A parent that lets ``method path`` run while the rotation waits for the enclave."""
    statuses: list[int] = []
    inner = enclave_parent(api.enclave)

    def respond(request: dict[str, Any]) -> Reply:
        if request.get("operation") == rotation.ROTATE_OPERATION and not statuses:
            statuses.append(api.call(method, path, body=body).status)
        return inner(request)

    api.respond_with(respond)
    return statuses


def test_a_patch_during_the_rotation_makes_it_409_and_the_patch_stays(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    statuses = _writing_during_rotation(api, "PATCH", f"/vaults/{vault_id}", {"email": "new@example.com"})
    response = _rotate(api, vault_id)
    assert statuses == [200]
    assert (response.status, response.json["code"]) == (409, "TransactionCancelled")
    patched_key = _item(api, vault_id)["_pk"]
    assert _decrypt(api, vault_id) == {**STORED, "email": "new@example.com"}
    assert _item(api, vault_id)["_pk"] == patched_key
    (record,) = _rotations(api, vault_id)
    assert record["_o"] == {"S": "TransactionCancelled"}
    # A retry rotates.
    api.respond_with(enclave_parent(api.enclave))
    assert _rotate(api, vault_id).status == 200
    assert _decrypt(api, vault_id) == {**STORED, "email": "new@example.com"}


def test_a_field_added_during_the_rotation_makes_it_409(api: ApiHarness) -> None:
    """A field the rotation did not read would be left under the old key."""
    vault_id = api.create(PERSON)
    _writing_during_rotation(api, "PATCH", f"/vaults/{vault_id}", {"dob": "1990-01-02"})
    assert _rotate(api, vault_id).status == 409
    assert _decrypt(api, vault_id, [*STORED, "dob"]) == {**STORED, "dob": "1990-01-02"}


def test_a_field_removal_during_the_rotation_makes_it_409(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    _writing_during_rotation(api, "DELETE", f"/vaults/{vault_id}", {"fields": ["email"]})
    assert _rotate(api, vault_id).status == 409
    assert _item(api, vault_id).get("email") is None
    kept = {name: value for name, value in STORED.items() if name != "email"}
    assert _decrypt(api, vault_id, list(kept)) == kept


def test_a_delete_during_the_rotation_makes_it_409_without_a_stub(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    _writing_during_rotation(api, "DELETE", f"/vaults/{vault_id}", {"delete_all": True})
    assert _rotate(api, vault_id).status == 409
    assert api.vault_item(vault_id) is None


def test_a_write_in_the_same_microsecond_still_makes_it_409(api: ApiHarness) -> None:
    """The condition compares the values read, not only the modified time."""
    vault_id = api.create(PERSON)
    modified = _item(api, vault_id)["_mt"]
    inner = enclave_parent(api.enclave)

    def respond(request: dict[str, Any]) -> Reply:
        # A writer that keeps the modified time as it was (a clock that did not move).
        new = seal_field(
            DEFAULT_SUITE, bytes(_item(api, vault_id)["_pk"]["B"]), vault_id, "email", b"same@us"
        )
        api.dynamodb.update_item(
            TableName=api.service.store.table_name,
            Key={"pk": {"S": f"VAULT##{vault_id}"}, "sk": {"S": "v0"}},
            UpdateExpression="SET email = :e, #mt = :mt",
            ExpressionAttributeNames={"#mt": "_mt"},
            ExpressionAttributeValues={":e": {"B": new}, ":mt": modified},
        )
        return inner(request)

    api.respond_with(respond)
    assert _rotate(api, vault_id).status == 409
    assert _decrypt(api, vault_id)["email"] == "same@us"


def test_a_patch_that_read_the_old_key_cannot_commit_after_the_rotation(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reverse race: PATCH seals to the key it read, a rotation commits, then PATCH writes.

    Without the PATCH's condition on the key it sealed to, the new field would be
    sealed to a key the vault no longer has, and lost.
    """
    vault_id = api.create(PERSON)
    store = api.service.store
    read = store.get_vault
    rotated: list[int] = []

    def read_then_rotate(vault: str, *args: Any, **kwargs: Any) -> Any:
        record = read(vault, *args, **kwargs)
        if not rotated:
            monkeypatch.setattr(store, "get_vault", read)
            rotated.append(_rotate(api, vault_id).status)
        return record

    monkeypatch.setattr(store, "get_vault", read_then_rotate)
    response = api.call("PATCH", f"/vaults/{vault_id}", body={"email": "late@example.com"})
    assert rotated == [200]
    assert (response.status, response.json["code"]) == (409, "TransactionCancelled")
    assert _decrypt(api, vault_id) == STORED
    # The retry is sealed to the new key.
    assert api.call("PATCH", f"/vaults/{vault_id}", body={"email": "late@example.com"}).status == 200
    assert _decrypt(api, vault_id)["email"] == "late@example.com"


# -- who may rotate ----------------------------------------------------------------------

POLICY = {
    "version": 1,
    "rules": [
        {"id": "readers", "principals": ["arn:aws:iam::*:role/Reader"], "fields": ["email"]},
        {
            "id": "key-admins",
            "principals": ["arn:aws:iam::*:role/KeyAdmin"],
            "reasons": ["scheduled *"],
            "rotate": True,
        },
    ],
}


@pytest.fixture
def policed(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    policy = RevealPolicy.from_json(json.dumps(POLICY))
    with api_harness(monkeypatch, authorizer=True, reveal_policy=policy) as harness:
        yield harness


def test_with_a_policy_a_rotate_rule_allows_it(policed: ApiHarness) -> None:
    vault_id = policed.create(PERSON)
    assert _rotate(policed, vault_id).status == 200
    response = _decrypt_as(policed, vault_id, "arn:aws:sts::123456789012:assumed-role/Reader/bob")
    assert response.json["data"] == {"email": PERSON["email"]}


def _decrypt_as(api: ApiHarness, vault_id: str, principal: str) -> ApiResponse:
    event = rest_event("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["email"], "reason": "r"})
    event["requestContext"]["identity"].update({"userArn": principal, "accountId": "123456789012"})
    return invoke(event)


@pytest.mark.parametrize(
    ("principal", "reason"),
    [
        ("arn:aws:sts::123456789012:assumed-role/Reader/bob", "scheduled rotation"),
        (ROLE_ARN, "because"),
        (None, "scheduled rotation"),
    ],
    ids=["reader-role", "other-reason", "no-principal"],
)
def test_with_a_policy_others_are_refused_and_audited(
    policed: ApiHarness, principal: str | None, reason: str
) -> None:
    vault_id = policed.create(PERSON)
    before = _item(policed, vault_id)
    response = _rotate(policed, vault_id, body={"reason": reason}, principal=principal)
    assert (response.status, response.json["code"]) == (403, "RotationNotAllowed")
    assert _item(policed, vault_id) == before
    assert policed.parent.sent == []
    (record,) = _rotations(policed, vault_id)
    assert record["_o"] == {"S": "RotationNotAllowed"}


def test_with_the_authorizer_the_enclave_refuses_a_substituted_key(policed: ApiHarness) -> None:
    """A parent that swaps the signed new public key for its own gets no re-sealed field."""
    vault_id = policed.create(PERSON)
    before = _item(policed, vault_id)
    inner = enclave_parent(policed.enclave)
    answers: list[dict[str, Any]] = []

    own_key = ec.generate_private_key(DEFAULT_SUITE.kem_params.curve())
    own = base64.b64encode(own_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    def respond(body: dict[str, Any]) -> Reply:
        swapped = {**body, "parameters": {**body["parameters"], rotation.NEW_PUBLIC_KEY: own.decode()}}
        reply = inner(swapped)
        assert not isinstance(reply, Exception)
        answers.append(reply[1])
        return reply

    policed.respond_with(respond)
    response = _rotate(policed, vault_id)
    assert (response.status, response.json["code"], response.json["enclaveCode"]) == (
        502,
        "EnclaveDecryptFailed",
        "Unauthorized",
    )
    ((answer),) = answers
    assert "fields" not in answer
    assert "AuthorizationMismatch" in answer["errors"][0]
    assert _item(policed, vault_id) == before
