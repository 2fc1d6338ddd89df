"""``POST /vaults/decrypt`` in the deployed app: routed to the function, its batch read permitted.

The route has no resource of its own (``ANY`` on ``{proxy+}``, SigV4, the function's router
answers it); the parent's ``/decrypt/batch`` sits behind the same NGINX ``location /`` as
``/decrypt``. What is new is the batch read: ``BatchGetItem`` on the table, beside
``GetItem`` in the function's policy and in the permissions boundary, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from .helpers import as_list, only, resources, statements
from .support import Synthesized


def test_the_batch_route_reaches_the_function_through_the_proxy_with_sigv4(vault: Synthesized) -> None:
    api = vault.raw("api")
    (method,) = resources(api, "AWS::ApiGateway::Method").values()
    assert method["Properties"]["HttpMethod"] == "ANY"
    assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
    assert only(api, "AWS::ApiGateway::Resource")["PathPart"] == "{proxy+}"


def test_the_function_may_read_a_batch_of_vaults_from_its_table_only(vault: Synthesized) -> None:
    policy = only(vault.raw("api"), "AWS::IAM::Policy")
    (read,) = [
        statement
        for statement in statements(policy["PolicyDocument"])
        if "dynamodb:BatchGetItem" in as_list(statement["Action"])
    ]
    assert sorted(as_list(read["Action"])) == ["dynamodb:BatchGetItem", "dynamodb:GetItem"]
    assert "Condition" not in read
    (table,) = resources(vault.raw("api"), "AWS::DynamoDB::GlobalTable")
    assert read["Resource"] == {"Fn::GetAtt": [table, "Arn"]}


def test_the_boundary_allows_the_batch_read_and_no_other_tier_uses_it(vault: Synthesized) -> None:
    boundary = only(vault.raw("identity"), "AWS::IAM::ManagedPolicy")
    assert "dynamodb:BatchGetItem" in boundary["PolicyDocument"]["Statement"][0]["Action"]
    for tier in ("network", "key", "decryption", "canary"):
        for policy in resources(vault.raw(tier), "AWS::IAM::Policy").values():
            for statement in statements(policy["Properties"]["PolicyDocument"]):
                assert "dynamodb:BatchGetItem" not in as_list(statement["Action"]), tier


def test_nginx_forwards_every_parent_path(vault: Synthesized) -> None:
    template = (
        Path(__file__).resolve().parents[2] / "cdk" / "vault_cdk" / "templates" / "nginx.conf"
    ).read_text()
    assert "location / {" in template
