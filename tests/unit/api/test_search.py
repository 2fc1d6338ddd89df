"""``POST /vaults/search`` and the blind-index tokens written with each vault.

The API holds the index key's public key only: the tokens in the table come from the
enclave (the harness's real request handler behind the parent double), under an
authorization the API signed for exactly that index request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from unit.api.doubles import Reply, canned, enclave_parent, raising
from unit.api.events import invoke, rest_event
from unit.api.harness import TABLE, ApiHarness, api_harness
from vault.api.blind_index import BlindIndex
from vault.api.config import ApiConfig, ConfigError
from vault.api.errors import ApiError, ErrorCode
from vault.api.kms import KmsKeyPairGenerator
from vault.api.reveal_policy import RevealPolicy
from vault.common.blind_index import INDEX_KEY_ID, TOKEN_PATTERN

SSN = "246813579"
OTHER_SSN = "987654321"
PRINCIPAL = "arn:aws:iam::123456789012:role/vault-search"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    with api_harness(monkeypatch, authorizer=True, search_index=True) as harness:
        yield harness


def _search(api: ApiHarness, field: str, value: str, principal: str | None = None) -> Any:
    event = rest_event("POST", "/vaults/search", body={"field": field, "value": value, "reason": "dedup"})
    if principal is not None:
        event["requestContext"]["identity"].update({"userArn": principal, "accountId": "123456789012"})
    return invoke(event)


def _search_audit(api: ApiHarness) -> list[dict[str, Any]]:
    return api.audit_items("search")


def _vault_items(api: ApiHarness) -> list[dict[str, Any]]:
    return [item for item in api.items() if item["pk"]["S"].startswith("VAULT##")]


def test_equal_values_are_found_and_only_they(api: ApiHarness) -> None:
    first = api.create({"ssn9": SSN, "first_name": "Ann"})
    second = api.create({"ssn9": SSN})
    other = api.create({"ssn9": OTHER_SSN})
    response = _search(api, "ssn9", SSN)
    assert response.status == 200, response.text
    assert response.json == {"ids": sorted([first, second]), "truncated": False}
    assert _search(api, "ssn9", OTHER_SSN).json["ids"] == [other]
    assert _search(api, "ssn9", "111111111").json["ids"] == []


def test_the_stored_token_is_keyed_not_a_plain_digest(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": SSN, "email": "ann@example.com"})
    item = api.vault_item(vault_id)
    assert item is not None
    token = item["_ix_ssn9"]["S"]
    assert TOKEN_PATTERN.fullmatch(token)
    assert token not in (hashlib.sha256(SSN.encode()).hexdigest(), SSN)
    assert item["_ix_email"]["S"] != token
    # Nothing but the token: the value is only in the sealed field.
    assert SSN not in json.dumps(item, default=str)


def test_e_mail_addresses_match_whatever_their_case(api: ApiHarness) -> None:
    vault_id = api.create({"email": "Ann@Example.com"})
    assert _search(api, "email", " ann@EXAMPLE.com ").json["ids"] == [vault_id]


def test_a_vault_without_searchable_fields_asks_nothing(api: ApiHarness) -> None:
    api.respond_with(raising(requests.ConnectionError("down")))
    vault_id = api.create({"first_name": "Ann"})
    item = api.vault_item(vault_id)
    assert item is not None and not any(name.startswith("_ix_") for name in item)


def test_no_vault_is_written_without_its_token(api: ApiHarness) -> None:
    api.respond_with(canned(503, {"message": "No enclaves available"}))
    response = api.call("POST", "/vaults", body={"ssn9": SSN})
    assert response.status == 503
    assert response.json["code"] == "EnclaveUnavailable"
    assert _vault_items(api) == []


def test_a_malformed_token_from_the_parent_writes_nothing(api: ApiHarness) -> None:
    api.respond_with(canned(200, {"fields": {"ssn9": "not-a-token"}, "errors": []}))
    response = api.call("POST", "/vaults", body={"ssn9": SSN})
    assert response.status == 502
    assert _vault_items(api) == []


def test_an_update_replaces_the_token_and_a_removal_drops_it(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": SSN, "email": "a@b.example"})
    assert api.call("PATCH", f"/vaults/{vault_id}", body={"ssn9": OTHER_SSN}).status == 200
    assert _search(api, "ssn9", SSN).json["ids"] == []
    assert _search(api, "ssn9", OTHER_SSN).json["ids"] == [vault_id]
    assert api.call("DELETE", f"/vaults/{vault_id}", body={"fields": ["ssn9"]}).status == 200
    item = api.vault_item(vault_id)
    assert item is not None and "_ix_ssn9" not in item and "_ix_email" in item
    assert _search(api, "ssn9", OTHER_SSN).json["ids"] == []
    assert _search(api, "email", "a@b.example").json["ids"] == [vault_id]


def test_a_forgotten_vault_is_not_found(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": SSN})
    assert api.call("DELETE", f"/vaults/{vault_id}", query={"forget": "true"}).status == 200
    assert _search(api, "ssn9", SSN).json["ids"] == []


def test_the_search_is_audited_before_the_enclave_is_asked_and_never_holds_the_value(api: ApiHarness) -> None:
    api.create({"ssn9": SSN})
    seen: list[list[str]] = []
    inner = enclave_parent(api.enclave)

    def respond(body: dict[str, Any]) -> Reply:
        seen.append([item["_o"]["S"] for item in _search_audit(api)])
        return inner(body)

    api.respond_with(respond)
    event = rest_event("POST", "/vaults/search", body={"field": "ssn9", "value": SSN, "reason": "dedup"})
    event["requestContext"]["identity"].update({"userArn": PRINCIPAL, "accountId": "123456789012"})
    assert invoke(event).status == 200
    assert seen == [["Pending"]]
    [record] = _search_audit(api)
    assert record["_e"]["S"] == "SearchVaults"
    assert record["_o"]["S"] == "Success"
    assert record["_p"]["S"] == PRINCIPAL
    assert [name["S"] for name in record["_f"]["L"]] == ["ssn9"]
    assert record["_r"]["S"] == "dedup"
    assert SSN not in json.dumps(record, default=str)


def test_a_timeout_is_audited_as_unknown(api: ApiHarness) -> None:
    api.create({"ssn9": SSN})
    api.respond_with(raising(requests.ReadTimeout("slow")))
    response = _search(api, "ssn9", SSN)
    assert response.status == 504
    [record] = _search_audit(api)
    assert record["_o"]["S"] == "Unknown"
    assert record["_c"]["S"] == "ParentTimeout"


def test_the_index_request_is_signed_and_sealed(api: ApiHarness) -> None:
    api.create({"ssn9": SSN})
    sent = api.parent.sent[-1].body
    assert sent["vault_id"] == INDEX_KEY_ID
    assert sent["operation"] == "index"
    assert set(sent["parameters"]) == {"deployment", "target", "sealed_sha256"}
    assert "authorization" in sent
    # The parent sees the value sealed only.
    assert SSN not in json.dumps(sent)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"field": "dob", "value": "2000-01-01", "reason": "r"}, "field"),
        ({"field": "ssn9", "value": "12345", "reason": "r"}, "value"),
        ({"field": "ssn9", "value": "12345678X", "reason": "r"}, "value"),
        ({"field": "ssn9", "value": SSN}, "reason"),
        ({"field": "ssn9", "value": SSN, "reason": "r", "extra": 1}, "extra"),
    ],
)
def test_invalid_searches_are_refused_without_quoting_the_value(
    api: ApiHarness, body: dict[str, Any], where: str
) -> None:
    response = api.call("POST", "/vaults/search", body=body)
    assert response.status == 422
    assert response.json["code"] == "ValidationError"
    assert where in json.dumps(response.json["errors"])
    assert str(body["value"]) not in response.text
    assert _search_audit(api) == []


def test_other_methods_on_search_are_not_allowed(api: ApiHarness) -> None:
    response = api.call("GET", "/vaults/search")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


def test_no_decrypt_route_can_name_the_index_key(api: ApiHarness) -> None:
    api.create({"ssn9": SSN})
    response = api.call("POST", f"/vaults/{INDEX_KEY_ID}/decrypt", body={"fields": ["ssn9"], "reason": "x"})
    assert response.status == 422


def test_search_without_the_index_is_not_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    with api_harness(monkeypatch, authorizer=True) as harness:
        response = _search(harness, "ssn9", SSN)
        assert response.status == 404
        assert response.json["code"] == "SearchNotEnabled"
        vault_id = harness.create({"ssn9": SSN})
        item = harness.vault_item(vault_id)
        assert item is not None and "_ix_ssn9" not in item


def test_the_index_needs_the_authorizer_key() -> None:
    env = {"TABLE_NAME": "t", "KEY_ARN": "k", "VAULT_URL": "https://p.test", "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match="AUTHORIZER_KEY_ARN"):
        ApiConfig.from_env({**env, "SEARCH_INDEX": "on"})
    with pytest.raises(ConfigError, match="on or off"):
        ApiConfig.from_env({**env, "SEARCH_INDEX": "yes"})
    assert ApiConfig.from_env({**env, "SEARCH_INDEX": "on", "AUTHORIZER_KEY_ARN": "a"}).search_index
    assert not ApiConfig.from_env(env).search_index


def test_a_policy_decides_who_may_search_which_field(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = RevealPolicy.from_json(
        json.dumps(
            {
                "version": 1,
                "rules": [{"id": "dedup", "principals": [PRINCIPAL], "search": ["ssn9"]}],
            }
        )
    )
    with api_harness(monkeypatch, authorizer=True, search_index=True, reveal_policy=policy) as harness:
        vault_id = harness.create({"ssn9": SSN, "email": "a@b.example"})
        calls = len(harness.parent.sent)
        assert _search(harness, "ssn9", SSN, PRINCIPAL).json["ids"] == [vault_id]
        for field, value, principal in (
            ("email", "a@b.example", PRINCIPAL),
            ("ssn9", SSN, "arn:aws:iam::123456789012:role/other"),
            ("ssn9", SSN, None),
        ):
            response = _search(harness, field, value, principal)
            assert response.status == 403
            assert response.json["code"] == "SearchNotAllowed"
            assert response.json["fields"] == [field]
        assert len(harness.parent.sent) == calls + 1, "refused searches never reach the parent"
        outcomes = sorted(item["_o"]["S"] for item in harness.audit_items("search"))
        assert outcomes == ["SearchNotAllowed"] * 3 + ["Success"]


def test_a_policy_refuses_search_of_a_field_that_is_not_searchable() -> None:
    document = {"version": 1, "rules": [{"id": "r", "principals": ["*"], "search": ["dob"]}]}
    with pytest.raises(ValueError, match="not searchable"):
        RevealPolicy.from_json(json.dumps(document))


class _RacingClient:
    """A DynamoDB client whose first index-key read misses: another container is writing it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.misses = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_item(self, **kwargs: Any) -> Any:
        if self.misses:
            self.misses -= 1
            return {}
        return self._client.get_item(**kwargs)


def test_containers_that_race_to_make_the_index_key_agree(api: ApiHarness) -> None:
    generator = KmsKeyPairGenerator(api.kms, api.key_arn, api.service.authorizer)
    first = BlindIndex(api.dynamodb, TABLE, generator).key()
    second = BlindIndex(_RacingClient(api.dynamodb), TABLE, generator).key()
    assert second == first
    config_items = [item for item in api.items() if item["pk"]["S"].startswith("CONFIG##")]
    assert len(config_items) == 1


# -- CEL hmac_sha256 -------------------------------------------------------------------------

HMAC_EXPRESSIONS = {"t": 'hmac_sha256(ssn9, "ssn9")', "e": 'hmac_sha256(email, "email")'}


def test_cel_hmac_sha256_is_the_stored_token(api: ApiHarness) -> None:
    vault_id = api.create({"ssn9": SSN, "email": "Ann@Example.com"})
    body = {"fields": ["ssn9", "email"], "reason": "link records", "expressions": HMAC_EXPRESSIONS}
    response = api.call("POST", f"/vaults/{vault_id}/decrypt", body=body)
    assert response.status == 200, response.text
    item = api.vault_item(vault_id)
    assert item is not None
    data = response.json["data"]
    assert (data["t"], data["e"]) == (item["_ix_ssn9"]["S"], item["_ix_email"]["S"])
    assert set(api.parent.sent[-1].body["parameters"]) == {"index_key", "index_deployment"}
    # A decrypt that does not call it carries no index key.
    plain = {"fields": ["ssn9"], "reason": "r", "expressions": {"d": "sha256(ssn9)"}}
    assert api.call("POST", f"/vaults/{vault_id}/decrypt", body=plain).status == 200
    assert "parameters" not in api.parent.sent[-1].body


def test_cel_hmac_sha256_without_the_index_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with api_harness(monkeypatch, authorizer=True) as harness:
        vault_id = harness.create({"ssn9": SSN})
        body = {"fields": ["ssn4"], "reason": "r", "expressions": {"t": 'hmac_sha256(ssn4, "ssn9")'}}
        response = harness.call("POST", f"/vaults/{vault_id}/decrypt", body=body)
        assert response.status == 200, response.text
        assert response.json["data"]["t"] is None
        assert "no index key" in response.json["errors"][0]
        assert SSN not in response.text


class _ConflictingClient:
    """A DynamoDB client whose transactions are cancelled by a conflicting write."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        error: Any = {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": "TransactionConflict"}],
        }
        raise ClientError(error, "TransactWriteItems")


def test_a_conflicting_write_of_the_index_key_is_a_409(api: ApiHarness) -> None:
    generator = KmsKeyPairGenerator(api.kms, api.key_arn, api.service.authorizer)
    index = BlindIndex(_ConflictingClient(api.dynamodb), TABLE, generator)
    with pytest.raises(ApiError) as refused:
        index.key()
    assert (refused.value.status, refused.value.code) == (409, ErrorCode.TRANSACTION_CANCELLED)
