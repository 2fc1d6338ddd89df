"""``POST /vaults/{id}/rotate`` in the deployed app: routed, permitted, and governed by the policy.

The route has no resource of its own: API Gateway sends every path below the root to the
function (``ANY`` on ``{proxy+}``, SigV4), and the function's router answers it. What a
rotation calls is what creating a vault and decrypting already need: ``GetItem``, an
``UpdateItem`` inside ``TransactWriteItems``, ``GenerateDataKeyPairWithoutPlaintext`` under
the key policy with the pinned key pair spec, ``kms:Sign`` with the authorizer key. So
the app deploys it without a new permission; these tests pin that, and that a reveal
policy's ``rotate`` rules reach the function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vault.api.reveal_policy import POLICY_ENV, RevealPolicy
from vault.api.rotation import ROTATION_SUITES
from vault.infra.key_policy import KEY_PAIR_SPEC

from .helpers import as_list, only, resources, statements
from .support import Synthesized, synthesize

POLICY: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"id": "readers", "principals": ["arn:aws:iam::*:role/vault-reader"], "fields": ["email"]},
        {"id": "keys", "principals": ["arn:aws:iam::*:role/vault-key-admin"], "rotate": True},
    ],
}


def test_the_rotate_path_reaches_the_function_through_the_proxy_with_sigv4(vault: Synthesized) -> None:
    api = vault.raw("api")
    (method,) = resources(api, "AWS::ApiGateway::Method").values()
    assert method["Properties"]["HttpMethod"] == "ANY"
    assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
    assert only(api, "AWS::ApiGateway::Resource")["PathPart"] == "{proxy+}"


def test_the_function_may_make_the_rotation_write(vault: Synthesized) -> None:
    policy = only(vault.raw("api"), "AWS::IAM::Policy")
    allowed = {
        action: statement.get("Condition")
        for statement in statements(policy["PolicyDocument"])
        for action in as_list(statement["Action"])
    }
    assert allowed["dynamodb:GetItem"] is None
    assert allowed["dynamodb:UpdateItem"] == {
        "StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"}
    }


def test_rotation_suites_are_on_the_pinned_key_pair_spec() -> None:
    """The key policy pins ``kms:DataKeyPairSpec``; a suite on another curve could never get its key."""
    assert KEY_PAIR_SPEC == "ECC_NIST_P384"
    assert [suite.kem_params.curve().name for suite in ROTATION_SUITES] == ["secp384r1"]


def test_a_rotate_rule_reaches_the_function(tmp_path: Path) -> None:
    path = tmp_path / "reveal-policy.json"
    path.write_text(json.dumps(POLICY))
    synthesized = synthesize(tmp_path, nag=False, **{"vault:revealPolicy": str(path)})
    function = only(synthesized.raw("api"), "AWS::Lambda::Function")
    policy = RevealPolicy.from_json(function["Environment"]["Variables"][POLICY_ENV])
    admin = "arn:aws:sts::123456789012:assumed-role/vault-key-admin/k"
    reader = "arn:aws:sts::123456789012:assumed-role/vault-reader/r"
    assert policy.may_rotate(admin, "scheduled")
    assert not policy.may_rotate(reader, "scheduled")
