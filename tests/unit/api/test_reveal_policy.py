"""The reveal policy: its schema, its matching, and the API's refusals (403 ``RevealNotAllowed``)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from unit.api.doubles import Reply, enclave_parent
from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness, api_harness
from vault.api.config import ApiConfig, ConfigError
from vault.api.reveal_policy import (
    POLICY_ENV,
    RevealPolicy,
    RevealPolicyError,
    RevealRefused,
    identities_of,
    policy_schema,
)
from vault.common.authorization import Grant, SignedAuthorization
from vault.common.messages import DecryptRequest

PERSON = {"first_name": "Ann", "ssn9": "123456789", "dob": "1986-01-01"}
SUPPORT = "arn:aws:sts::123456789012:assumed-role/vault-support/alice"
ANALYTICS = "arn:aws:sts::123456789012:assumed-role/vault-analytics/bob"
STRANGER = "arn:aws:sts::123456789012:assumed-role/vault-other/eve"
AGE = "date(dob).age()"
DIGEST = "sha256(ssn9)"

POLICY: dict[str, Any] = {
    "version": 1,
    "expressions": {"age": {"text": AGE, "inputs": ["dob"]}},
    "rules": [
        {
            "id": "support",
            "principals": ["arn:aws:iam::123456789012:role/vault-support"],
            "reasons": ["ticket *"],
            "fields": ["ssn4"],
            "expressions": ["age"],
        },
        {
            "id": "analytics",
            "principals": ["arn:aws:iam::*:role/vault-analytics"],
            "expressions": ["age", {"text": DIGEST, "inputs": ["ssn9"]}],
        },
    ],
}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    policy = RevealPolicy.from_json(json.dumps(POLICY))
    with api_harness(monkeypatch, authorizer=True, reveal_policy=policy) as harness:
        yield harness


def _decrypt(api: ApiHarness, vault_id: str, body: dict[str, Any], principal: str | None) -> Any:
    event = rest_event("POST", f"/vaults/{vault_id}/decrypt", body=body)
    if principal is not None:
        event["requestContext"]["identity"].update({"userArn": principal, "accountId": "123456789012"})
    return invoke(event)


def _decrypt_outcomes(api: ApiHarness, vault_id: str) -> list[str]:
    return [item["_o"]["S"] for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault"]


def _counting_parent(api: ApiHarness) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    inner = enclave_parent(api.enclave)

    def respond(body: dict[str, Any]) -> Reply:
        sent.append(body)
        return inner(body)

    api.respond_with(respond)
    return sent


# -- the document ------------------------------------------------------------------------


def test_the_example_policy_is_valid_and_has_a_schema() -> None:
    RevealPolicy.from_json(json.dumps(POLICY))
    schema = policy_schema()
    properties = schema["properties"]
    assert isinstance(properties, dict)
    assert set(properties) == {"version", "expressions", "rules"}


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("{", "not JSON"),
        (json.dumps({**POLICY, "version": 2}), "version"),
        (json.dumps({**POLICY, "extra": 1}), "extra"),
        (json.dumps({**POLICY, "rules": []}), "rules"),
        (json.dumps({**POLICY, "rules": [{**POLICY["rules"][0], "fields": ["salary"]}]}), "salary"),
        (json.dumps({**POLICY, "rules": [{**POLICY["rules"][0], "expressions": ["nope"]}]}), "nope"),
        (json.dumps({**POLICY, "rules": [POLICY["rules"][0], POLICY["rules"][0]]}), "unique"),
        (json.dumps({**POLICY, "rules": [{**POLICY["rules"][0], "principals": []}]}), "principals"),
        (json.dumps({**POLICY, "expressions": {"age": {"text": AGE, "inputs": ["bogus"]}}}), "bogus"),
    ],
)
def test_an_invalid_policy_is_refused_with_where(document: str, where: str) -> None:
    with pytest.raises(RevealPolicyError, match=where):
        RevealPolicy.from_json(document)


def test_the_error_never_quotes_a_refused_value() -> None:
    secret = "123-45-6789"
    document = json.dumps({**POLICY, "rules": [{**POLICY["rules"][0], "id": secret}]})
    with pytest.raises(RevealPolicyError) as caught:
        RevealPolicy.from_json(document)
    assert secret not in str(caught.value)


def test_an_invalid_policy_is_a_configuration_error() -> None:
    env = {"TABLE_NAME": "t", "KEY_ARN": "k", "VAULT_URL": "https://v", "AWS_REGION": "eu-west-1"}
    assert ApiConfig.from_env(env).reveal_policy is None
    assert ApiConfig.from_env({**env, POLICY_ENV: json.dumps(POLICY)}).reveal_policy is not None
    with pytest.raises(ConfigError, match=POLICY_ENV):
        ApiConfig.from_env({**env, POLICY_ENV: '{"version": 1}'})


def _import_handler(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import vault.api.handler"],
        env={
            **env,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_REGION": "eu-west-1",
            "TABLE_NAME": "t",
            "KEY_ARN": "k",
            "VAULT_URL": "https://v",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cold_start_fails_on_an_invalid_policy_and_warns_without_one() -> None:
    bad = _import_handler({POLICY_ENV: '{"version": 1, "rules": []}'})
    assert bad.returncode != 0
    assert "ConfigError" in bad.stderr and "rules" in bad.stderr
    none = _import_handler({})
    assert none.returncode == 0, none.stderr
    assert none.stdout.count("No reveal policy") == 1
    good = _import_handler({POLICY_ENV: json.dumps(POLICY)})
    assert good.returncode == 0, good.stderr
    assert "No reveal policy" not in good.stdout


# -- matching ------------------------------------------------------------------------------


def test_an_assumed_role_session_matches_as_its_role() -> None:
    assert identities_of(SUPPORT) == (SUPPORT, "arn:aws:iam::123456789012:role/vault-support")
    assert identities_of("arn:aws:iam::123456789012:user/u") == ("arn:aws:iam::123456789012:user/u",)


def test_wildcards_match_runs_of_characters_and_nothing_else_is_special() -> None:
    document = {
        **POLICY,
        "rules": [{"id": "r", "principals": ["arn:aws:iam::*:role/a.b"], "fields": ["ssn4"]}],
    }
    policy = RevealPolicy.from_json(json.dumps(document))
    assert policy.allowance("arn:aws:iam::1:role/a.b", "x").fields == {"ssn4"}
    assert policy.allowance("arn:aws:iam::1:role/aXb", "x").fields == set()


def test_reasons_restrict_a_rule_and_no_principal_gets_nothing() -> None:
    policy = RevealPolicy.from_json(json.dumps(POLICY))
    assert policy.allowance(SUPPORT, "ticket 7").fields == {"ssn4"}
    assert policy.allowance(SUPPORT, "curiosity").fields == set()
    assert policy.allowance(None, "ticket 7").fields == set()
    assert set(policy.allowance(ANALYTICS, "anything").expressions) == {AGE, DIGEST}


def test_a_plan_opens_expression_inputs_without_returning_them() -> None:
    policy = RevealPolicy.from_json(json.dumps(POLICY))
    plan = policy.plan(SUPPORT, "ticket 7", ["ssn4"], {"age": AGE})
    assert (plan.plaintext, plan.inputs_only) == (("ssn4",), ("dob",))
    with pytest.raises(RevealRefused) as caught:
        policy.plan(SUPPORT, "ticket 7", ["ssn4", "dob"], {"age": AGE, "h": DIGEST})
    assert (caught.value.fields, caught.value.expressions) == (["dob"], ["h"])
    with pytest.raises(RevealRefused) as collided:
        policy.plan(SUPPORT, "ticket 7", [], {"dob": AGE})
    assert collided.value.expressions == ["dob"]


# -- the API ---------------------------------------------------------------------------------


def test_support_gets_ssn4_and_age_but_never_dob(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    sent = _counting_parent(api)
    body = {"fields": ["ssn4"], "reason": "ticket 7", "expressions": {"age": AGE}}
    response = _decrypt(api, vault_id, body, SUPPORT)
    assert response.status == 200, response.text
    assert set(response.json["data"]) == {"ssn4", "age"}
    assert response.json["data"]["ssn4"] == "6789"
    assert isinstance(response.json["data"]["age"], int)
    assert "1986" not in response.text
    # The enclave was authorized for ssn4 and the expression's input, nothing else.
    (request,) = sent
    assert set(request["fields"]) == {"ssn4", "dob"}
    grant = Grant.from_bytes(
        SignedAuthorization.from_wire(DecryptRequest.model_validate(request).authorization).claims
    )
    assert set(grant.fields) == {"ssn4", "dob"}
    assert [name for name, _ in grant.expressions] == ["age"]
    assert _decrypt_outcomes(api, vault_id) == ["Success"]


@pytest.mark.parametrize(
    ("principal", "body", "fields", "expressions"),
    [
        (SUPPORT, {"fields": ["ssn9", "ssn4"], "reason": "ticket 7"}, ["ssn9"], []),
        (SUPPORT, {"fields": ["ssn4"], "reason": "curiosity"}, ["ssn4"], []),
        (SUPPORT, {"fields": [], "reason": "ticket 7", "expressions": {"h": DIGEST}}, [], ["h"]),
        (ANALYTICS, {"fields": ["dob"], "reason": "report", "expressions": {"age": AGE}}, ["dob"], []),
        (ANALYTICS, {"fields": [], "reason": "report", "expressions": {"a": "date(dob).age() "}}, [], ["a"]),
        (STRANGER, {"fields": ["ssn4"], "reason": "ticket 7"}, ["ssn4"], []),
        (None, {"fields": ["ssn4"], "reason": "ticket 7"}, ["ssn4"], []),
    ],
)
def test_what_the_policy_does_not_allow_is_refused_before_the_parent(
    api: ApiHarness, principal: str | None, body: dict[str, Any], fields: list[str], expressions: list[str]
) -> None:
    vault_id = api.create(PERSON)
    sent = _counting_parent(api)
    response = _decrypt(api, vault_id, body, principal)
    assert response.status == 403, response.text
    assert response.json["code"] == "RevealNotAllowed"
    assert (response.json["fields"], response.json["expressions"]) == (fields, expressions)
    assert "123456789" not in response.text and "date(" not in response.text
    assert sent == []
    assert _decrypt_outcomes(api, vault_id) == ["RevealNotAllowed"]


def test_analytics_gets_expression_outputs_only(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    body = {"fields": [], "reason": "report", "expressions": {"age": AGE, "h": DIGEST}}
    response = _decrypt(api, vault_id, body, ANALYTICS)
    assert response.status == 200, response.text
    assert set(response.json["data"]) == {"age", "h"}
    assert "123456789" not in response.text and "1986" not in response.text


def test_an_unknown_vault_is_still_not_found(api: ApiHarness) -> None:
    response = _decrypt(api, "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL", {"fields": ["ssn9"], "reason": "x"}, STRANGER)
    assert response.status == 404


def test_without_a_policy_every_field_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with api_harness(monkeypatch, authorizer=True) as harness:
        vault_id = harness.create(PERSON)
        response = _decrypt(harness, vault_id, {"fields": ["ssn9", "dob"], "reason": "x"}, STRANGER)
        assert response.status == 200, response.text
        assert response.json["data"]["ssn9"] == "123456789"


def test_the_refusal_log_names_no_value(api: ApiHarness, caplog: pytest.LogCaptureFixture) -> None:
    vault_id = api.create(PERSON)
    with caplog.at_level(logging.DEBUG):
        _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "ticket 7"}, SUPPORT)
    assert "123456789" not in caplog.text
