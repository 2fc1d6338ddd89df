"""The API's authorizer key (decision D16): asymmetric, and only the API's role may sign with it."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.aws.kms.policy import RequestContext, evaluate
from vault.common.authorization import SIGNING_ALGORITHM

from .helpers import as_list, only, resources, statements
from .support import ACCOUNT, REGION, Synthesized

API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-api"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-instance"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/authorizer"


@pytest.fixture(scope="module")
def api(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("api"))


def _authorizer_key(api: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    keys = resources(api, "AWS::KMS::Key")
    (name,) = [n for n, k in keys.items() if k["Properties"].get("KeyUsage") == "SIGN_VERIFY"]
    return name, dict(keys[name])


def test_the_key_is_an_asymmetric_signing_key_that_is_kept(api: dict[str, Any]) -> None:
    _, key = _authorizer_key(api)
    assert key["Properties"]["KeySpec"] == "ECC_NIST_P256"
    assert key["DeletionPolicy"] == "Retain"
    assert "EnableKeyRotation" not in key["Properties"]


def test_the_function_is_told_the_key(api: dict[str, Any]) -> None:
    name, _ = _authorizer_key(api)
    env = only(api, "AWS::Lambda::Function")["Environment"]["Variables"]
    assert env["AUTHORIZER_KEY_ARN"] == {"Fn::GetAtt": [name, "Arn"]}


def _policy(api: dict[str, Any]) -> dict[str, Any]:
    _, key = _authorizer_key(api)
    policy: dict[str, Any] = key["Properties"]["KeyPolicy"]
    return policy


def _signer_statement(api: dict[str, Any]) -> dict[str, Any]:
    (statement,) = [
        s for s in statements(_policy(api)) if s["Effect"] == "Allow" and "kms:Sign" in as_list(s["Action"])
    ]
    return dict(statement)


def test_only_the_api_role_is_allowed_to_sign(api: dict[str, Any]) -> None:
    statement = _signer_statement(api)
    assert statement["Principal"] == {"AWS": API_ROLE}
    assert statement["Condition"]["StringEqualsIfExists"] == {"kms:SigningAlgorithm": SIGNING_ALGORITHM}
    for other in statements(_policy(api)):
        if other["Effect"] == "Allow" and other["Sid"] != statement["Sid"]:
            assert "kms:Sign" not in as_list(other["Action"])
            assert "kms:*" not in as_list(other["Action"])


@pytest.mark.parametrize(
    ("principal", "action", "allowed"),
    [
        (API_ROLE, "kms:Sign", True),
        (API_ROLE, "kms:GetPublicKey", True),
        (INSTANCE_ROLE, "kms:Sign", False),
        (INSTANCE_ROLE, "kms:GetPublicKey", False),
        (ROOT, "kms:Sign", False),
        (API_ROLE, "kms:CreateGrant", False),
        (ROOT, "kms:CreateGrant", False),
        (f"arn:aws:iam::{ACCOUNT}:role/anything-else", "kms:Sign", False),
        ("arn:aws:iam::999999999999:role/vault/nitro-vault-api", "kms:Sign", False),
    ],
)
def test_the_deployed_policy_decides_as_intended(
    api: dict[str, Any], principal: str, action: str, allowed: bool
) -> None:
    keys: dict[str, list[str]] = {"kms:CallerAccount": [principal.split(":")[4]]}
    if action == "kms:Sign":
        keys["kms:SigningAlgorithm"] = [SIGNING_ALGORITHM]
    # Root is judged with every IAM action allowed: what the key policy itself leaves open.
    iam_allowed = ["kms:*"] if principal == ROOT else []
    request = RequestContext(principal, action, KEY, keys, iam_allowed_actions=iam_allowed)
    assert evaluate(_policy(api), request).allowed is allowed


def test_another_algorithm_is_not_allowed(api: dict[str, Any]) -> None:
    keys = {"kms:CallerAccount": [ACCOUNT], "kms:SigningAlgorithm": ["ECDSA_SHA_384"]}
    assert not evaluate(_policy(api), RequestContext(API_ROLE, "kms:Sign", KEY, keys)).allowed


def test_the_boundary_lets_the_api_role_sign(vault: Synthesized) -> None:
    boundary = only(vault.raw("identity"), "AWS::IAM::ManagedPolicy")
    actions = boundary["PolicyDocument"]["Statement"][0]["Action"]
    assert {"kms:Sign", "kms:GetPublicKey"} <= set(actions)
