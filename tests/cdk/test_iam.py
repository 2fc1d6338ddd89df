"""Every role of every stack: path ``/vault/``, the permissions boundary, fixed names where named."""

from __future__ import annotations

from .helpers import as_list, only, resources, statements
from .support import ACCOUNT, Synthesized

TIERS = ("identity", "network", "key", "api", "decryption", "canary")
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/vault/nitro-vault-boundary"


def test_every_role_has_the_boundary_and_the_vault_path(vault: Synthesized) -> None:
    count = 0
    for tier in TIERS:
        for name, role in resources(vault.raw(tier), "AWS::IAM::Role").items():
            props = role["Properties"]
            assert props.get("Path") == "/vault/", f"{tier}/{name}"
            assert props.get("PermissionsBoundary") == BOUNDARY_ARN, f"{tier}/{name}"
            count += 1
    assert count >= 8


def test_named_roles_and_boundary(vault: Synthesized) -> None:
    identity = vault.raw("identity")
    names = sorted(r["Properties"]["RoleName"] for r in resources(identity, "AWS::IAM::Role").values())
    assert names == ["nitro-vault-api", "nitro-vault-instance"]
    boundary = only(identity, "AWS::IAM::ManagedPolicy")
    assert boundary["ManagedPolicyName"] == "nitro-vault-boundary" and boundary["Path"] == "/vault/"
    actions = boundary["PolicyDocument"]["Statement"][0]["Action"]
    assert "kms:Decrypt" in actions
    assert not any(a.startswith("iam:") and a != "iam:GetRole" for a in actions)
    assert not any(a.endswith(":*") or a == "*" for a in actions)


def test_no_identity_policy_grants_key_administration(vault: Synthesized) -> None:
    forbidden = {"*", "kms:*", "kms:PutKeyPolicy", "kms:CreateGrant", "iam:*"}
    for tier in TIERS:
        for policy in resources(vault.raw(tier), "AWS::IAM::Policy").values():
            for statement in statements(policy["Properties"]["PolicyDocument"]):
                if statement["Effect"] == "Allow":
                    assert not forbidden.intersection(as_list(statement["Action"])), (tier, statement)
