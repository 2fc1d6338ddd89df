"""GET /vaults/{vault_id}/audit: newest first, paged, names and outcomes only (D14)."""

from __future__ import annotations

import json
import re

import pytest

from unit.api.doubles import canned
from unit.api.harness import ApiHarness


def _audit(api: ApiHarness, vault_id: str, **query: str) -> tuple[int, dict[str, object]]:
    response = api.call("GET", f"/vaults/{vault_id}/audit", query=query or None)
    return response.status, response.json


def _history(api: ApiHarness) -> str:
    vault_id = api.create({"first_name": "Ann", "ssn9": "123456789"})
    assert api.call("PATCH", f"/vaults/{vault_id}", body={"email": "ann@example.com"}).status == 200
    body = {"fields": ["ssn4", "dob"], "reason": "KYC check"}
    assert api.call("POST", f"/vaults/{vault_id}/decrypt", body=body).status == 200
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["ssn9"]}).status == 200
    api.respond_with(canned(503, {"code": 503, "message": "enclave busy"}))
    assert (
        api.call("POST", f"/vaults/{vault_id}/decrypt", body={"fields": ["email"], "reason": "retry"}).status
        == 503
    )
    return vault_id


def test_events_newest_first_with_names_and_outcomes(api: ApiHarness) -> None:
    vault_id = _history(api)
    status, body = _audit(api, vault_id)
    assert status == 200
    assert body["next_token"] is None
    events = body["events"]
    assert [(e["event"], e["reason"], e["fields"], e["outcome"]) for e in events] == [
        ("DecryptVault", "retry", ["email"], "EnclaveUnavailable"),
        ("UpdateVault", "RemoveFields", ["ssn9", "ssn4"], "Success"),
        ("DecryptVault", "KYC check", ["ssn4", "dob"], "PartialSuccess"),
        ("UpdateVault", None, ["email"], "Success"),
        ("CreateVault", None, ["first_name", "ssn9", "ssn4"], "Success"),
    ]
    stamps = [e["timestamp"] for e in events]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp) for stamp in stamps)
    assert stamps == sorted(stamps, reverse=True)


def test_audit_never_shows_values(api: ApiHarness) -> None:
    vault_id = _history(api)
    page = json.loads(api.call("GET", f"/vaults/{vault_id}/audit").text)
    # Timestamps are digits too (microseconds can read 6789), so compare everything else.
    for event in page["events"]:
        assert set(event) == {
            "event",
            "timestamp",
            "reason",
            "fields",
            "outcome",
            "principal",
            "expressions",
            "request_id",
            "error_code",
        }
        shown = json.dumps({k: v for k, v in event.items() if k != "timestamp"})
        for value in ("Ann", "123456789", "6789", "ann@example.com"):
            assert value not in shown


def test_pages_cover_the_log_exactly_once(api: ApiHarness) -> None:
    vault_id = _history(api)
    _, full = _audit(api, vault_id)
    seen: list[object] = []
    token: str | None = None
    for _ in range(10):
        query = {"limit": "2", **({"next_token": token} if token else {})}
        status, page = _audit(api, vault_id, **query)
        assert status == 200
        assert len(page["events"]) <= 2
        seen.extend(page["events"])
        token = page["next_token"]
        if token is None:
            break
    assert seen == full["events"]


def test_default_page_size_is_25(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    for index in range(26):
        assert api.call("PATCH", f"/vaults/{vault_id}", body={"city": f"c{index}"}).status == 200
    _, page = _audit(api, vault_id)
    assert len(page["events"]) == 25
    assert page["next_token"] is not None
    _, rest = _audit(api, vault_id, next_token=page["next_token"])
    assert [e["event"] for e in rest["events"]] == ["UpdateVault", "CreateVault"]


def test_token_only_positions_within_the_requested_vault(api: ApiHarness) -> None:
    # A token carries a position in time, never a partition: another vault's token
    # pages through the requested vault's own log.
    second = api.create({"first_name": "Bob"})
    first = _history(api)
    _, page = _audit(api, first, limit="1")
    status, other = _audit(api, second, next_token=page["next_token"])
    assert status == 200
    assert [e["event"] for e in other["events"]] == ["CreateVault"]


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"next_token": "x" * 65}, "next_token"),
    ],
)
def test_query_validation(api: ApiHarness, query: dict[str, str], loc: str) -> None:
    vault_id = api.create({})
    status, body = _audit(api, vault_id, **query)
    assert status == 422
    assert body["code"] == "ValidationError"
    assert body["errors"][0]["loc"] == ["query", loc]


@pytest.mark.parametrize("token", ["!!!", "YWJj", "LTE", "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAx"])
def test_tokens_not_issued_by_the_api_are_refused(api: ApiHarness, token: str) -> None:
    vault_id = api.create({})
    status, body = _audit(api, vault_id, next_token=token)
    assert (status, body) == (
        422,
        {"statusCode": 422, "code": "InvalidNextToken", "message": "next_token is not valid"},
    )


def test_deleted_vault_keeps_a_readable_log(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"delete_all": True}).status == 200
    status, body = _audit(api, vault_id)
    assert status == 200
    assert [e["event"] for e in body["events"]] == ["DeleteVault", "CreateVault"]


def test_unknown_vault_is_404(api: ApiHarness) -> None:
    status, body = _audit(api, "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL")
    assert (status, body["code"]) == (404, "VaultNotFound")


def test_upstream_records_without_outcome_are_shown(api: ApiHarness) -> None:
    vault_id = api.create({})
    api.dynamodb.put_item(
        TableName=api.service.store.table_name,
        Item={
            "pk": {"S": f"LOG##{vault_id}"},
            "sk": {"S": "1717551301000000"},
            "_e": {"S": "DecryptVault"},
            "_id": {"S": vault_id},
            "_ct": {"N": "1717551301000000"},
            "_r": {"S": "legacy"},
            "_f": {"L": [{"S": "ssn9"}]},
        },
    )
    _, body = _audit(api, vault_id)
    assert body["events"][-1] == {
        "event": "DecryptVault",
        "timestamp": "2024-06-05T01:35:01.000000Z",
        "reason": "legacy",
        "fields": ["ssn9"],
        "outcome": None,
        "principal": None,
        "expressions": [],
        "request_id": None,
        "error_code": None,
    }
