"""Audit before reveal (decision D16): the decrypt's record exists before the parent is asked.

The parent stand-ins here read the table at the moment they are called, so "before"
is observed, not inferred from the final state.
"""

from __future__ import annotations

import copy
from typing import Any

import requests

from unit.api.doubles import Reply, Responder, enclave_parent
from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness

PERSON = {"first_name": "Ann", "ssn9": "123456789", "dob": "1986-01-01"}
ROLE_ARN = "arn:aws:sts::123456789012:assumed-role/SupportRole/alice"
BODY = {
    "fields": ["ssn4", "first_name", "dob"],
    "reason": "ticket 7",
    "expressions": {"age": "date(dob).age()"},
}


def _decrypt_as(api: ApiHarness, vault_id: str, body: dict[str, Any], principal: str | None) -> int:
    event = rest_event("POST", f"/vaults/{vault_id}/decrypt", body=body)
    if principal is not None:
        # What API Gateway adds after IAM authorization (as the emulator's gateway does with --sigv4).
        event["requestContext"]["identity"].update(
            {"userArn": principal, "caller": "AROAEXAMPLE:alice", "accountId": "123456789012"}
        )
    return invoke(event).status


def _decrypt_records(api: ApiHarness, vault_id: str) -> list[dict[str, Any]]:
    return [item for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault"]


def _watching(
    api: ApiHarness, vault_id: str, then: Responder
) -> tuple[Responder, list[list[dict[str, Any]]]]:
    """A parent that records the vault's decrypt records as they are when it is called."""
    seen: list[list[dict[str, Any]]] = []

    def respond(body: dict[str, Any]) -> Reply:
        seen.append(copy.deepcopy(_decrypt_records(api, vault_id)))
        return then(body)

    return respond, seen


def test_the_record_exists_before_the_parent_is_called(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    responder, seen = _watching(api, vault_id, enclave_parent(api.enclave))
    api.respond_with(responder)
    assert _decrypt_as(api, vault_id, BODY, ROLE_ARN) == 200
    (before,) = seen
    (pending,) = before
    assert pending["_o"] == {"S": "Pending"}
    assert pending["_p"] == {"S": ROLE_ARN}
    assert pending["_r"] == {"S": "ticket 7"}
    assert pending["_f"] == {"L": [{"S": "ssn4"}, {"S": "first_name"}, {"S": "dob"}]}
    assert pending["_x"] == {"L": [{"S": "age"}]}
    assert pending["_g"] == {"S": "req-1"}
    request_id = pending["_q"]["S"]
    assert request_id
    # The same record, completed: one record per decrypt.
    (after,) = _decrypt_records(api, vault_id)
    assert after["sk"] == pending["sk"]
    assert (after["_o"], after["_q"]) == ({"S": "Success"}, {"S": request_id})
    assert "_c" not in after


def test_the_principal_and_expression_names_are_shown_by_the_audit_route(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _decrypt_as(api, vault_id, BODY, ROLE_ARN) == 200
    event = api.call("GET", f"/vaults/{vault_id}/audit").json["events"][0]
    assert event["event"] == "DecryptVault"
    assert (event["principal"], event["outcome"], event["expressions"]) == (ROLE_ARN, "Success", ["age"])
    assert event["request_id"]
    assert event["error_code"] is None
    # The expression's text is the caller's; only its output name is kept.
    assert "date(dob)" not in str(event)


def test_without_iam_authorization_the_record_has_no_principal(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _decrypt_as(api, vault_id, {"fields": ["ssn4"], "reason": "r"}, None) == 200
    (record,) = _decrypt_records(api, vault_id)
    assert "_p" not in record


def test_each_attempt_has_its_own_request_id(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    for _ in range(3):
        assert _decrypt_as(api, vault_id, {"fields": ["ssn4"], "reason": "r"}, ROLE_ARN) == 200
    ids = {record["_q"]["S"] for record in _decrypt_records(api, vault_id)}
    assert len(ids) == 3


def test_a_parent_timeout_leaves_the_outcome_unknown(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)

    def time_out(body: dict[str, Any]) -> Reply:
        return requests.ReadTimeout("read timed out")

    responder, seen = _watching(api, vault_id, time_out)
    api.respond_with(responder)
    assert _decrypt_as(api, vault_id, {"fields": ["ssn9"], "reason": "r"}, ROLE_ARN) == 504
    assert [record["_o"]["S"] for record in seen[0]] == ["Pending"]
    (record,) = _decrypt_records(api, vault_id)
    assert (record["_o"], record["_c"], record["_p"]) == (
        {"S": "Unknown"},
        {"S": "ParentTimeout"},
        {"S": ROLE_ARN},
    )
    event = api.call("GET", f"/vaults/{vault_id}/audit").json["events"][0]
    assert (event["outcome"], event["error_code"]) == ("Unknown", "ParentTimeout")


def test_a_refused_connection_is_a_failure_not_unknown(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.respond_with(lambda body: requests.ConnectionError("refused"))
    assert _decrypt_as(api, vault_id, {"fields": ["ssn9"], "reason": "r"}, ROLE_ARN) == 502
    (record,) = _decrypt_records(api, vault_id)
    assert record["_o"] == {"S": "ParentUnreachable"}


def test_no_record_no_request(api: ApiHarness) -> None:
    """When the pending record cannot be written, the parent is never asked."""
    vault_id = api.create(PERSON)
    at = 1_800_000_000_000_000
    api.service.clock = lambda: at
    # Another record already holds that sort key: the pending record's condition fails.
    api.dynamodb.put_item(
        TableName=api.service.store.table_name,
        Item={"pk": {"S": f"LOG##{vault_id}"}, "sk": {"S": str(at)}, "_e": {"S": "UpdateVault"}},
    )
    response = api.call("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["ssn9"], "reason": "r"})
    assert (response.status, response.json["code"]) == (409, "TransactionCancelled")
    assert api.parent.sent == []
    assert "123456789" not in response.text


def test_a_lost_completion_still_answers_and_leaves_the_record_pending(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)

    def delete_then_answer(body: dict[str, Any]) -> Reply:
        # The pending record disappears (as if deleted behind the API's back): the completion's
        # condition fails, and the answer the enclave gave is still returned, not retried.
        for record in _decrypt_records(api, vault_id):
            api.dynamodb.delete_item(
                TableName=api.service.store.table_name, Key={"pk": record["pk"], "sk": record["sk"]}
            )
        return enclave_parent(api.enclave)(body)

    api.respond_with(delete_then_answer)
    response = api.call("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["ssn4"], "reason": "r"})
    assert response.status == 200
    assert response.json["data"] == {"ssn4": "6789"}
    # The completion never creates a record that was not written first.
    assert _decrypt_records(api, vault_id) == []
