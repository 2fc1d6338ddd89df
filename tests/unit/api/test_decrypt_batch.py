"""``POST /vaults/decrypt``: several vaults, one parent call, per-vault results and audit records.

The real handler on moto, the project's enclave (single and batch handlers) behind a
parent double, with the API's authorizer and a reveal policy where the test needs them.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from urllib3.exceptions import ProtocolError

from tests.support.enclave_keys import TEST_CREDENTIAL
from unit.api.doubles import Reply, Responder, canned, enclave_parent, raising
from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness, api_harness
from vault.api.errors import ApiError, ErrorCode
from vault.api.handler import app
from vault.api.models import MAX_BATCH_EXPRESSION_BYTES, DecryptBatchBody
from vault.api.reveal_policy import RevealPolicy
from vault.api.store import VaultPart, VaultStore
from vault.common.messages import MAX_BATCH, BatchDecryptRequest, EnclaveBatchRequest
from vault.enclave.batch import BatchHandler

ANN = {"first_name": "Ann", "ssn9": "123456789", "dob": "1986-01-01"}
BOB = {"first_name": "Bob", "last_name": "Smith"}
SUPPORT = "arn:aws:sts::123456789012:assumed-role/vault-support/alice"
AGE = "date(dob).age()"
POLICY: dict[str, Any] = {
    "version": 1,
    "expressions": {"age": {"text": AGE, "inputs": ["dob"]}},
    "rules": [
        {
            "id": "support",
            "principals": ["arn:aws:iam::123456789012:role/vault-support"],
            "fields": ["first_name", "ssn4"],
            "expressions": ["age"],
        }
    ],
}


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    """The API signs each vault's authorization; the enclave refuses what it did not sign."""
    with api_harness(monkeypatch, authorizer=True) as harness:
        yield harness


@pytest.fixture
def policed(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    policy = RevealPolicy.from_json(json.dumps(POLICY))
    with api_harness(monkeypatch, authorizer=True, reveal_policy=policy) as harness:
        yield harness


def _batch(
    api: ApiHarness, vaults: list[dict[str, Any]], *, reason: str = "ticket 9", principal: str | None = None
) -> tuple[int, dict[str, Any]]:
    event = rest_event("POST", "/vaults/decrypt", body={"reason": reason, "vaults": vaults})
    if principal is not None:
        event["requestContext"]["identity"].update(
            {"userArn": principal, "caller": "AROAEXAMPLE:alice", "accountId": "123456789012"}
        )
    response = invoke(event)
    return response.status, response.json


def _decrypt_records(api: ApiHarness, vault_id: str) -> list[dict[str, Any]]:
    return [item for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault"]


def _batch_sends(api: ApiHarness) -> list[dict[str, Any]]:
    return [sent.body for sent in api.parent.sent if sent.url.endswith("/decrypt/batch")]


# -- results ---------------------------------------------------------------------------------


def test_each_vault_gets_its_own_result_in_request_order_from_one_parent_call(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    status, body = _batch(
        signed,
        [
            {"id": bob, "fields": ["last_name", "EMAIL"]},
            {"id": "v_doesnotexist", "fields": ["first_name"]},
            {"id": ann, "fields": ["ssn4", "dob"], "expressions": {"age": AGE}},
        ],
    )
    assert status == 200, body
    first, missing, third = body["results"]
    assert first == {
        "id": bob,
        "data": {"last_name": "Smith", "email": None},
        "errors": ["[email] field not present in vault"],
    }
    assert missing["id"] == "v_doesnotexist"
    assert (missing["error"]["status"], missing["error"]["code"]) == (404, "VaultNotFound")
    assert "data" not in missing
    assert third["id"] == ann and third["errors"] == []
    assert third["data"]["ssn4"] == "6789" and third["data"]["dob"] == "1986-01-01"
    assert isinstance(third["data"]["age"], int)
    # One parent call, carrying the two vaults that exist; nothing went to the single route.
    (sent,) = signed.parent.sent
    assert sent.url == "https://parent.test/decrypt/batch"
    assert [request["vault_id"] for request in sent.body["requests"]] == [bob, ann]


def test_each_vault_has_its_own_audit_record_pending_before_the_parent_is_asked(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    seen: list[dict[str, list[dict[str, Any]]]] = []
    then = enclave_parent(signed.enclave)

    def watching(body: dict[str, Any]) -> Reply:
        seen.append({vault: copy.deepcopy(_decrypt_records(signed, vault)) for vault in (ann, bob)})
        return then(body)

    signed.respond_with(watching)
    status, _ = _batch(
        signed,
        [
            {"id": ann, "fields": ["first_name", "dob"], "expressions": {"age": AGE}},
            {"id": bob, "fields": ["last_name"]},
        ],
        principal=SUPPORT,
    )
    assert status == 200
    (before,) = seen
    request_ids = set()
    for vault, names, expressions in ((ann, ["first_name", "dob"], ["age"]), (bob, ["last_name"], [])):
        (pending,) = before[vault]
        assert pending["_o"] == {"S": "Pending"}
        assert pending["_p"] == {"S": SUPPORT}
        assert pending["_r"] == {"S": "ticket 9"}
        assert pending["_f"] == {"L": [{"S": name} for name in names]}
        assert pending.get("_x", {"L": []}) == {"L": [{"S": name} for name in expressions]}
        (after,) = _decrypt_records(signed, vault)
        assert after["sk"] == pending["sk"] and after["_q"] == pending["_q"]
        assert after["_o"] == {"S": "Success"}
        request_ids.add(pending["_q"]["S"])
    assert len(request_ids) == 2, "each vault's decrypt has its own request id"
    # Each entry's authorization is signed under its own record's request id.
    (sent,) = _batch_sends(signed)
    claims = [
        json.loads(_claims(request["authorization"]["claims"]).split(b"\n", 1)[1])
        for request in sent["requests"]
    ]
    assert {claim["request_id"] for claim in claims} == request_ids
    assert [claim["vault_id"] for claim in claims] == [ann, bob]


def _claims(encoded: str) -> bytes:
    return base64.b64decode(encoded)


def test_a_batch_that_needs_no_enclave_calls_no_parent(signed: ApiHarness) -> None:
    bob = signed.create(BOB)
    status, body = _batch(signed, [{"id": bob, "fields": ["ssn9"]}, {"id": "v_nothere", "fields": ["dob"]}])
    assert status == 200
    assert body["results"][0] == {
        "id": bob,
        "data": {"ssn9": None},
        "errors": ["[ssn9] field not present in vault"],
    }
    assert body["results"][1]["error"]["code"] == "VaultNotFound"
    assert signed.parent.sent == []
    (record,) = _decrypt_records(signed, bob)
    assert record["_o"] == {"S": "PartialSuccess"}
    assert _decrypt_records(signed, "v_nothere") == [], (
        "an unknown vault is not audited (as the single decrypt)"
    )


def test_one_vault_refused_by_the_policy_does_not_stop_the_others(policed: ApiHarness) -> None:
    ann, bob = policed.create(ANN), policed.create(BOB)
    status, body = _batch(
        policed,
        [
            {"id": ann, "fields": ["ssn4"], "expressions": {"age": AGE}},
            {"id": bob, "fields": ["first_name", "last_name"]},
        ],
        principal=SUPPORT,
    )
    assert status == 200, body
    allowed, refused = body["results"]
    # dob was opened for the expression only: it never leaves the API.
    assert allowed["id"] == ann and set(allowed["data"]) == {"ssn4", "age"}
    assert refused["id"] == bob and "data" not in refused
    assert refused["error"]["status"] == 403
    assert refused["error"]["code"] == "RevealNotAllowed"
    assert refused["error"]["fields"] == ["last_name"]
    assert "Smith" not in json.dumps(body)
    (sent,) = _batch_sends(policed)
    assert [request["vault_id"] for request in sent["requests"]] == [ann], "a refused vault is never sent"
    (record,) = _decrypt_records(policed, bob)
    assert (record["_o"], record["_p"]) == ({"S": "RevealNotAllowed"}, {"S": SUPPORT})


def test_a_caller_without_a_principal_is_refused_for_every_vault(policed: ApiHarness) -> None:
    ann = policed.create(ANN)
    status, body = _batch(policed, [{"id": ann, "fields": ["first_name"]}])
    assert status == 200
    assert body["results"][0]["error"]["code"] == "RevealNotAllowed"
    assert policed.parent.sent == []


def test_one_vault_the_enclave_refuses_is_that_vaults_error(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    then = enclave_parent(signed.enclave)

    def break_bob(body: dict[str, Any]) -> Reply:
        tampered = copy.deepcopy(body)
        for request in tampered["requests"]:
            if request["vault_id"] == bob:
                # A parent that widens one entry: the authorization no longer covers it.
                request["fields"]["first_name"] = request["fields"]["last_name"]
        return then(tampered)

    signed.respond_with(break_bob)
    status, body = _batch(
        signed, [{"id": ann, "fields": ["first_name"]}, {"id": bob, "fields": ["last_name"]}]
    )
    assert status == 200
    good, bad = body["results"]
    assert good == {"id": ann, "data": {"first_name": "Ann"}, "errors": []}
    assert bad["id"] == bob and "data" not in bad
    assert (bad["error"]["status"], bad["error"]["code"], bad["error"]["enclaveCode"]) == (
        502,
        "EnclaveDecryptFailed",
        "Unauthorized",
    )
    assert "AuthorizationMismatch" in bad["error"]["errors"][0]
    assert _decrypt_records(signed, ann)[0]["_o"] == {"S": "Success"}
    assert _decrypt_records(signed, bob)[0]["_o"] == {"S": "EnclaveDecryptFailed"}


def test_a_kms_timeout_for_one_vault_is_its_504(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    then = enclave_parent(signed.enclave)

    def slow_kms_for_bob(body: dict[str, Any]) -> Reply:
        status, payload = then(body)  # type: ignore[misc]
        payload["replies"][1] = {
            "errors": ["failed to call KMS: KMS did not answer in time"],
            "code": "KmsTimeout",
        }
        return status, payload

    signed.respond_with(slow_kms_for_bob)
    status, body = _batch(
        signed, [{"id": ann, "fields": ["first_name"]}, {"id": bob, "fields": ["last_name"]}]
    )
    assert status == 200
    assert body["results"][1]["error"]["status"] == 504
    assert body["results"][1]["error"]["code"] == "KmsTimeout"
    assert _decrypt_records(signed, bob)[0]["_o"] == {"S": "KmsTimeout"}


# -- the parent or enclave tampering with authorizations -------------------------------------


def test_swapped_authorizations_are_refused_for_both_vaults(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    then = enclave_parent(signed.enclave)

    def swap(body: dict[str, Any]) -> Reply:
        tampered = copy.deepcopy(body)
        first, second = tampered["requests"]
        first["authorization"], second["authorization"] = second["authorization"], first["authorization"]
        return then(tampered)

    signed.respond_with(swap)
    status, body = _batch(
        signed, [{"id": ann, "fields": ["first_name"]}, {"id": bob, "fields": ["first_name"]}]
    )
    assert status == 200
    for result in body["results"]:
        assert "data" not in result
        assert result["error"]["enclaveCode"] == "Unauthorized"
    assert "Ann" not in json.dumps(body) and "Bob" not in json.dumps(body)


def test_an_entry_without_authorization_gets_unauthorized_and_no_plaintext(signed: ApiHarness) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    then = enclave_parent(signed.enclave)

    def strip_second(body: dict[str, Any]) -> Reply:
        tampered = copy.deepcopy(body)
        del tampered["requests"][1]["authorization"]
        return then(tampered)

    signed.respond_with(strip_second)
    status, body = _batch(
        signed, [{"id": ann, "fields": ["first_name"]}, {"id": bob, "fields": ["first_name"]}]
    )
    assert status == 200
    assert body["results"][0]["data"] == {"first_name": "Ann"}
    assert body["results"][1]["error"]["enclaveCode"] == "Unauthorized"
    assert "AuthorizationMissing" in body["results"][1]["error"]["errors"][0]
    assert "Bob" not in json.dumps(body)


def test_a_replayed_batch_reveals_nothing(signed: ApiHarness) -> None:
    ann = signed.create(ANN)
    assert _batch(signed, [{"id": ann, "fields": ["first_name"]}])[0] == 200
    (sent,) = _batch_sends(signed)
    # Whoever saw the batch go by sends it to the enclave again.
    document = EnclaveBatchRequest(
        credential=TEST_CREDENTIAL, batch=BatchDecryptRequest.model_validate(sent).requests
    ).to_wire()
    reply = BatchHandler(signed.enclave).handle_document(document).to_wire()
    (entry,) = reply["replies"]
    assert "fields" not in entry and entry["code"] == "Unauthorized"
    assert "AuthorizationReplayed" in entry["errors"][0]


def test_the_same_authorization_twice_in_one_batch_reveals_once(signed: ApiHarness) -> None:
    ann = signed.create(ANN)
    then = enclave_parent(signed.enclave)

    def duplicate(body: dict[str, Any]) -> Reply:
        doubled = {"requests": body["requests"] * 2}
        status, payload = then(doubled)  # type: ignore[misc]
        outcomes = sorted("fields" in reply for reply in payload["replies"])
        assert outcomes == [False, True], "the replay cache admits one of the two"
        return status, {"replies": payload["replies"][:1]}

    signed.respond_with(duplicate)
    assert _batch(signed, [{"id": ann, "fields": ["first_name"]}])[0] == 200


# -- whole-request failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "status", "code", "unknown"),
    [
        pytest.param(
            raising(requests.ConnectionError("refused")), 502, "ParentUnreachable", False, id="refused"
        ),
        pytest.param(
            raising(requests.ConnectionError(ProtocolError("Connection aborted."))),
            502,
            "ParentUnreachable",
            True,
            id="lost",
        ),
        pytest.param(raising(requests.ReadTimeout("read")), 504, "ParentTimeout", True, id="read-timeout"),
        pytest.param(
            canned(504, {"code": 504, "message": "late"}), 504, "EnclaveTimeout", True, id="enclave-timeout"
        ),
        pytest.param(
            canned(503, {"code": 503, "message": "busy"}), 503, "EnclaveUnavailable", False, id="busy"
        ),
        pytest.param(canned(200, {"replies": []}), 502, "ParentError", False, id="wrong-count"),
        pytest.param(canned(200, {"fields": {}, "errors": []}), 502, "ParentError", False, id="single-reply"),
    ],
)
def test_a_failed_exchange_fails_the_request_and_completes_every_record(
    signed: ApiHarness, reply: Responder, status: int, code: str, unknown: bool
) -> None:
    ann, bob = signed.create(ANN), signed.create(BOB)
    signed.respond_with(reply)
    got, body = _batch(signed, [{"id": ann, "fields": ["first_name"]}, {"id": bob, "fields": ["last_name"]}])
    assert (got, body["code"]) == (status, code)
    assert "results" not in body
    for vault in (ann, bob):
        (record,) = _decrypt_records(signed, vault)
        if unknown:
            assert (record["_o"]["S"], record["_c"]["S"]) == ("Unknown", code)
        else:
            assert record["_o"]["S"] == code and "_c" not in record


def test_a_failed_audit_write_sends_nothing(signed: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = signed.create(ANN)

    def refuse(txn: Any) -> None:
        raise RuntimeError("the store is down")

    monkeypatch.setattr(signed.service.store, "commit", refuse)
    with pytest.raises(RuntimeError):
        signed.service.decrypt_batch(_body([{"id": ann, "fields": ["first_name"]}]))
    assert signed.parent.sent == []


def _body(vaults: list[dict[str, Any]]) -> DecryptBatchBody:
    return DecryptBatchBody.model_validate({"reason": "r", "vaults": vaults})


# -- validation ------------------------------------------------------------------------------


def _ids(count: int) -> list[dict[str, Any]]:
    return [{"id": f"v_{index:04d}", "fields": ["first_name"]} for index in range(count)]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        pytest.param({"reason": "r", "vaults": []}, "too_short", id="empty"),
        pytest.param({"reason": "r", "vaults": _ids(MAX_BATCH + 1)}, "too_long", id="over-the-bound"),
        pytest.param(
            {"reason": "r", "vaults": [{"id": "v_a", "fields": []}, {"id": "v_a", "fields": ["dob"]}]},
            "duplicate_vault",
            id="duplicate",
        ),
        pytest.param(
            {"reason": "r", "vaults": [{"id": "not-an-id", "fields": []}]}, "string_pattern_mismatch", id="id"
        ),
        pytest.param(
            {"reason": "r", "vaults": [{"id": "v_a", "fields": ["password"]}]}, "vault_field", id="field"
        ),
        pytest.param({"reason": "r", "vaults": [{"id": "v_a"}]}, "missing", id="no-fields"),
        pytest.param({"vaults": [{"id": "v_a", "fields": []}]}, "missing", id="no-reason"),
        pytest.param(
            {"reason": "r", "vaults": [{"id": "v_a", "fields": [], "extra": 1}]},
            "extra_forbidden",
            id="extra",
        ),
        pytest.param(
            {"reason": "r", "vaults": [{"id": "v_a", "fields": [], "expressions": {"x": "1" * 10241}}]},
            "expression_too_long",
            id="expression",
        ),
        pytest.param(
            {
                "reason": "r",
                "vaults": [
                    {"id": f"v_{index}", "fields": [], "expressions": {"x": "1" * 10000}}
                    for index in range(MAX_BATCH_EXPRESSION_BYTES // 10000 + 1)
                ],
            },
            "batch_too_large",
            id="expressions-of-the-batch",
        ),
    ],
)
def test_invalid_batches_are_refused_before_anything_happens(
    signed: ApiHarness, body: dict[str, Any], rule: str
) -> None:
    before = signed.items()
    response = invoke(rest_event("POST", "/vaults/decrypt", body=body))
    assert response.status == 422, response.text
    assert response.json["code"] == "ValidationError"
    assert rule in {error["type"] for error in response.json["errors"]}
    assert signed.items() == before and signed.parent.sent == []


def test_fifty_vaults_are_accepted(signed: ApiHarness) -> None:
    vault = signed.create(BOB)
    vaults = [{"id": vault, "fields": ["first_name"]}, *_ids(MAX_BATCH - 1)]
    status, body = _batch(signed, vaults)
    assert status == 200
    assert len(body["results"]) == MAX_BATCH
    assert body["results"][0]["data"] == {"first_name": "Bob"}
    assert {result["error"]["code"] for result in body["results"][1:]} == {"VaultNotFound"}


def test_other_methods_are_405(api: ApiHarness) -> None:
    response = api.call("GET", "/vaults/decrypt")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


def test_the_openapi_document_describes_the_route(api: ApiHarness) -> None:
    document = json.loads(app.get_openapi_json_schema())
    operation = document["paths"]["/vaults/decrypt"]["post"]
    assert {"200", "422", "502", "503", "504"} <= set(operation["responses"])
    schemas = document["components"]["schemas"]
    assert schemas["DecryptBatchBody"]["properties"]["vaults"]["maxItems"] == MAX_BATCH


# -- the store's batch read ------------------------------------------------------------------


def test_each_record_of_a_batch_read_holds_only_its_own_fields(api: ApiHarness) -> None:
    ann, bob = api.create(ANN), api.create(BOB)
    store = api.service.store
    records = store.get_vaults(
        [(ann, ["first_name"]), (bob, ["last_name", "dob"]), ("v_missing", ["first_name"])],
        {VaultPart.PRIVATE_KEY},
    )
    assert set(records) == {ann, bob}
    assert set(records[ann].fields) == {"first_name"}
    assert set(records[bob].fields) == {"last_name"}
    assert records[ann].encrypted_private_key and records[bob].encrypted_private_key


class _Throttling:
    """A DynamoDB client that leaves every key but the first unprocessed once."""

    def __init__(self, client: Any, rounds: int) -> None:
        self._client = client
        self.rounds = rounds
        self.calls: list[int] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        self.calls.append(len(request["Keys"]))
        if len(self.calls) > self.rounds:
            reply: dict[str, Any] = self._client.batch_get_item(RequestItems=RequestItems)
            return reply
        first, rest = request["Keys"][:1], request["Keys"][1:]
        reply = self._client.batch_get_item(RequestItems={table: {**request, "Keys": first}})
        reply["UnprocessedKeys"] = {table: {**request, "Keys": rest}} if rest else {}
        return reply


def test_unprocessed_keys_are_asked_again(api: ApiHarness) -> None:
    ids = [api.create(BOB) for _ in range(3)]
    client = _Throttling(api.dynamodb, rounds=1)
    records = VaultStore(client, api.service.store.table_name).get_vaults([(v, ["first_name"]) for v in ids])
    assert set(records) == set(ids)
    assert client.calls == [3, 2]


def test_keys_left_unprocessed_too_often_fail_the_read(api: ApiHarness) -> None:
    ids = [api.create(BOB) for _ in range(6)]
    client = _Throttling(api.dynamodb, rounds=10)
    with pytest.raises(ApiError) as raised:
        VaultStore(client, api.service.store.table_name).get_vaults([(v, ["first_name"]) for v in ids])
    assert raised.value.code is ErrorCode.STORAGE_ERROR
    assert len(client.calls) == 4, "a bounded number of attempts"
