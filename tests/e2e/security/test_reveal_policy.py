"""A reveal policy per caller, end to end: two roles through the SigV4-checking gateway.

The emulator is started with ``--sigv4`` and a reveal policy file, which it hands to the
API as the CDK app does (``REVEAL_POLICY``). The gateway's test principals include two
assumed-role sessions, ``vault-support`` and ``vault-analytics``: the support role gets
``ssn4`` and the age only, the analytics role expression outputs only, the IAM test user
nothing. What a role may not see is refused with 403 ``RevealNotAllowed`` naming the
fields and expression outputs, and the refusal is in the vault's audit under the caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.security.targets import VaultTarget
from emulator.daemon import lifecycle
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.state import EmulatorState
from emulator.tools.cli import main
from emulator.tools.client import SigV4Signer, VaultClient

pytestmark = pytest.mark.e2e

SSN = "123450987"
DOB = "1986-03-04"
AGE = "date(dob).age()"
DIGEST = "sha256(ssn9)"
POLICY: dict[str, Any] = {
    "version": 1,
    "expressions": {"age": {"text": AGE, "inputs": ["dob"]}},
    "rules": [
        {
            "id": "support",
            "principals": ["arn:aws:iam::*:role/vault-support"],
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


@pytest.fixture(scope="module")
def policy_stack(
    vault_target: VaultTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorState]:
    state = vault_target.emulator("an emulator of our own, started with --sigv4 and a reveal policy")
    root = tmp_path_factory.mktemp("emulator-reveal-policy")
    policy = root / "reveal-policy.json"
    policy.write_text(json.dumps(POLICY))
    config = EmulatorConfig(
        state_dir=root / "state",
        backend=state.backend,  # type: ignore[arg-type]
        enclave_runtime=state.enclave_runtime,  # type: ignore[arg-type]
        port=0,
        sigv4=True,
        reveal_policy=policy,
    )
    started = lifecycle.up(config)
    try:
        yield started
    finally:
        lifecycle.down(config.layout)


def _client(stack: EmulatorState, arn_part: str) -> VaultClient:
    (principal,) = [p for p in stack.facts["sigv4_principals"] if arn_part in p["arn"]]
    signer = SigV4Signer(principal["access_key_id"], principal["secret_access_key"], stack.facts["region"])
    return VaultClient(stack.api_url, signer=signer)


def _decrypt(api: VaultClient, vault_id: str, body: dict[str, Any]) -> tuple[int, Any, str]:
    response = api.request("POST", f"/vaults/{vault_id}/decrypt", json_body=body)
    return response.status_code, response.json(), response.text


@pytest.fixture(scope="module")
def vault_id(policy_stack: EmulatorState) -> str:
    with _client(policy_stack, ":user/") as api:
        return api.create({"first_name": "Policy Firstname", "ssn9": SSN, "dob": DOB})


def _principal_arn(stack: EmulatorState, arn_part: str) -> str:
    (arn,) = [p["arn"] for p in stack.facts["sigv4_principals"] if arn_part in p["arn"]]
    return str(arn)


def test_support_gets_ssn4_and_age_only(policy_stack: EmulatorState, vault_id: str) -> None:
    with _client(policy_stack, "/vault-support/") as api:
        status, body, text = _decrypt(
            api, vault_id, {"fields": ["ssn4"], "reason": "ticket 12", "expressions": {"age": AGE}}
        )
        assert status == 200, text
        assert set(body["data"]) == {"ssn4", "age"}
        assert body["data"]["ssn4"] == SSN[-4:]
        assert isinstance(body["data"]["age"], int)
        assert DOB not in text
        status, body, text = _decrypt(api, vault_id, {"fields": ["ssn9", "ssn4"], "reason": "ticket 12"})
        assert status == 403, text
        assert (body["code"], body["fields"], body["expressions"]) == ("RevealNotAllowed", ["ssn9"], [])
        assert SSN not in text
        status, body, _ = _decrypt(api, vault_id, {"fields": ["ssn4"], "reason": "curiosity"})
        assert (status, body["code"]) == (403, "RevealNotAllowed")


def test_analytics_gets_expression_outputs_only(policy_stack: EmulatorState, vault_id: str) -> None:
    with _client(policy_stack, "/vault-analytics/") as api:
        status, body, text = _decrypt(
            api, vault_id, {"fields": [], "reason": "report", "expressions": {"age": AGE, "h": DIGEST}}
        )
        assert status == 200, text
        assert set(body["data"]) == {"age", "h"}
        assert SSN not in text and DOB not in text
        status, body, text = _decrypt(
            api,
            vault_id,
            {"fields": ["ssn4"], "reason": "report", "expressions": {"b": "base64_encode(ssn9)"}},
        )
        assert status == 403, text
        assert (body["code"], body["fields"], body["expressions"]) == ("RevealNotAllowed", ["ssn4"], ["b"])
        assert "base64_encode" not in text


def test_a_principal_without_a_rule_gets_nothing_and_refusals_are_audited(
    policy_stack: EmulatorState, vault_id: str
) -> None:
    with _client(policy_stack, ":user/") as api:
        status, body, text = _decrypt(api, vault_id, {"fields": ["first_name"], "reason": "ticket 1"})
        assert status == 403, text
        assert body["code"] == "RevealNotAllowed"
        events = api.request("GET", f"/vaults/{vault_id}/audit").json()["events"]
    decrypts = [event for event in events if event["event"] == "DecryptVault"]
    refused = {(e["principal"], tuple(e["fields"])) for e in decrypts if e["outcome"] == "RevealNotAllowed"}
    assert (_principal_arn(policy_stack, ":user/"), ("first_name",)) in refused
    assert (_principal_arn(policy_stack, "/vault-support/"), ("ssn9", "ssn4")) in refused
    succeeded = {e["principal"] for e in decrypts if e["outcome"] == "Success"}
    assert _principal_arn(policy_stack, "/vault-support/") in succeeded


def test_up_refuses_an_invalid_policy_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**POLICY, "rules": [{**POLICY["rules"][0], "fields": ["salary"]}]}))
    state_dir = tmp_path / "state"
    assert main(["up", "--state-dir", str(state_dir), "--reveal-policy", str(bad)]) == 2
    assert not (state_dir / "state.json").exists()
