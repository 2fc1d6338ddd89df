"""Property: the API never authorizes to the enclave more than the reveal policy allows.

Random policies (principal patterns with ``*``, reasons, plaintext fields, expressions
with their inputs) and random decrypt requests from random callers, through the real
handler. The test's own model of the policy says what the caller may receive; the API
must answer 403 ``RevealNotAllowed`` exactly when the request asks for more, send
nothing to the parent then, and otherwise sign and send no field and no expression
beyond the allowed ones, and return no field the caller may not see in plaintext.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.api.doubles import Reply, enclave_parent
from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness, api_harness

from vault.api.reveal_policy import RevealPolicy
from vault.common.authorization import Grant, SignedAuthorization, expression_digest
from vault.common.messages import DecryptRequest

PERSON = {"first_name": "Ann", "ssn9": "123456789", "dob": "1986-01-01", "city": "Oslo"}
FIELDS = ["first_name", "ssn9", "ssn4", "dob", "city"]
ACCOUNT = "123456789012"
ROLES = ["vault-support", "vault-analytics", "vault-admin"]
PRINCIPALS = [f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session" for role in ROLES] + [
    f"arn:aws:iam::{ACCOUNT}:user/vault-tester"
]
PATTERNS = [
    f"arn:aws:iam::{ACCOUNT}:role/vault-support",
    "arn:aws:iam::*:role/vault-analytics",
    "arn:aws:iam::*:role/vault-*",
    f"arn:aws:iam::{ACCOUNT}:user/*",
    "*",
]
EXPRESSIONS = {
    "date(dob).age()": ["dob"],
    "sha256(ssn9)": ["ssn9"],
    "base64_encode(city)": ["city"],
}
REASONS = ["ticket 1", "report", "audit"]
REASON_PATTERNS = ["ticket *", "report", "*"]
OUTPUT_NAMES = ["age", "h", "b", "dob", "ssn9"]

rules = st.builds(
    lambda principals, reasons, fields, expressions: {
        "principals": principals,
        **({"reasons": reasons} if reasons else {}),
        "fields": fields,
        "expressions": [{"text": text, "inputs": EXPRESSIONS[text]} for text in expressions],
    },
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2, unique=True),
    st.one_of(st.none(), st.lists(st.sampled_from(REASON_PATTERNS), min_size=1, max_size=2, unique=True)),
    st.lists(st.sampled_from(FIELDS), max_size=3, unique=True),
    st.lists(st.sampled_from(sorted(EXPRESSIONS)), max_size=2, unique=True),
)
policies = st.lists(rules, min_size=1, max_size=3).map(
    lambda items: {"version": 1, "rules": [{"id": f"r{i}", **rule} for i, rule in enumerate(items)]}
)
requests = st.fixed_dictionaries(
    {
        "principal": st.one_of(st.none(), st.sampled_from(PRINCIPALS)),
        "reason": st.sampled_from(REASONS),
        "fields": st.lists(st.sampled_from(FIELDS), max_size=3, unique=True),
        "expressions": st.dictionaries(
            st.sampled_from(OUTPUT_NAMES), st.sampled_from(sorted(EXPRESSIONS)), max_size=2
        ),
    }
)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    # With the authorizer: what the API authorizes is what it signs.
    with api_harness(monkeypatch, authorizer=True) as harness:
        yield harness


def _matches(pattern: str, value: str) -> bool:
    # The patterns above hold no fnmatch specials besides "*".
    return fnmatch.fnmatchcase(value, pattern)


def _model(
    policy: dict[str, Any], principal: str | None, reason: str
) -> tuple[set[str], dict[str, set[str]]]:
    """The fields and expression texts (→ inputs) the caller may receive, computed independently."""
    if principal is None:
        return set(), {}
    identities = [principal]
    if ":assumed-role/" in principal:
        role = principal.split(":assumed-role/")[1].split("/")[0]
        identities.append(f"arn:aws:iam::{ACCOUNT}:role/{role}")
    fields: set[str] = set()
    expressions: dict[str, set[str]] = {}
    for rule in policy["rules"]:
        if not any(_matches(p, i) for p in rule["principals"] for i in identities):
            continue
        if "reasons" in rule and not any(_matches(p, reason) for p in rule["reasons"]):
            continue
        fields |= set(rule["fields"])
        for expression in rule["expressions"]:
            expressions.setdefault(expression["text"], set()).update(expression["inputs"])
    return fields, expressions


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy=policies, request=requests)
def test_the_api_authorizes_no_more_than_the_policy(
    api: ApiHarness, policy: dict[str, Any], request: dict[str, Any]
) -> None:
    api.service.reveal_policy = RevealPolicy.from_json(json.dumps(policy))
    vault_id = api.create(PERSON)
    sent: list[dict[str, Any]] = []
    inner = enclave_parent(api.enclave)

    def respond(body: dict[str, Any]) -> Reply:
        sent.append(body)
        return inner(body)

    api.respond_with(respond)
    body = {"fields": request["fields"], "reason": request["reason"], "expressions": request["expressions"]}
    event = rest_event("POST", f"/vaults/{vault_id}/decrypt", body=body)
    if request["principal"] is not None:
        event["requestContext"]["identity"].update({"userArn": request["principal"], "accountId": ACCOUNT})
    response = invoke(event)

    allowed_fields, allowed_expressions = _model(policy, request["principal"], request["reason"])
    inputs = {name for text in request["expressions"].values() for name in allowed_expressions.get(text, ())}
    hidden = inputs - set(request["fields"])
    allowed = (
        set(request["fields"]) <= allowed_fields
        and all(text in allowed_expressions for text in request["expressions"].values())
        and not hidden & set(request["expressions"])
    )
    if not allowed:
        assert response.status == 403, response.text
        assert response.json["code"] == "RevealNotAllowed"
        assert sent == []
        return
    assert response.status == 200, response.text
    assert set(response.json["data"]) <= set(request["fields"]) | set(request["expressions"])
    for name in hidden:
        assert PERSON.get(name, "\0") not in response.text
    for message in sent:
        grant = Grant.from_bytes(
            SignedAuthorization.from_wire(DecryptRequest.model_validate(message).authorization).claims
        )
        assert set(grant.fields) <= allowed_fields | inputs
        assert set(message["fields"]) <= allowed_fields | inputs
        digests = {expression_digest(text) for text in allowed_expressions}
        assert {digest for _, digest in grant.expressions} <= digests
