"""The API tier: table (spec 1.5, 7.5), function (1.10, 1.6) and the IAM-authorized REST API (D15)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vault.infra import table as table_def

from .helpers import as_list, only, resources, statements
from .support import ACCOUNT, DOMAIN, Synthesized


@pytest.fixture(scope="module")
def api(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("api"))


def test_table_layout_and_protection(api: dict[str, Any]) -> None:
    table = only(api, "AWS::DynamoDB::GlobalTable")
    assert table["KeySchema"] == [
        {"AttributeName": table_def.PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": table_def.SORT_KEY, "KeyType": "RANGE"},
    ]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "_ix_email", "AttributeType": "S"},
        {"AttributeName": "_ix_ssn9", "AttributeType": "S"},
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expire_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    replica = table["Replicas"][0]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert replica["DeletionProtectionEnabled"] is True
    sids = [s["Sid"] for s in statements(replica["ResourcePolicy"]["PolicyDocument"])]
    assert sids == ["IdentityPerimeter", "ConfusedDeputyProtection", "NetworkPerimeter"]


def test_function_configuration(api: dict[str, Any]) -> None:
    function = only(api, "AWS::Lambda::Function")
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Handler"] == "vault.api.handler.lambda_handler"
    assert function["MemorySize"] == 1024
    assert function["Timeout"] == 10
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert len(function["VpcConfig"]["SubnetIds"]) == 2
    assert len(function["Layers"]) == 1
    env = function["Environment"]["Variables"]
    assert set(env) == {
        "TABLE_NAME",
        "KEY_ARN",
        "AUTHORIZER_KEY_ARN",
        "SEARCH_INDEX",
        "VAULT_URL",
        "AWS_ACCOUNT_ID",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "LOG_LEVEL",
        "POWERTOOLS_LOGGER_SAMPLE_RATE",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
    }
    assert env["VAULT_URL"] == f"https://{DOMAIN}"
    assert env["AWS_ACCOUNT_ID"] == ACCOUNT
    assert env["LOG_LEVEL"] == "INFO"
    # Decision D14: no retention configured, so audit items never expire (the variable is unset).
    assert "AUDIT_RETENTION_DAYS" not in env
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    groups = [g["Properties"] for g in resources(api, "AWS::Logs::LogGroup").values()]
    function_logs = [g for g in groups if g.get("LogGroupName") == "/aws/lambda/nitro-vault-api"]
    assert [g["RetentionInDays"] for g in function_logs] == [3]


def test_function_security_group_egress_is_https_only(api: dict[str, Any]) -> None:
    group = next(
        g["Properties"]
        for g in resources(api, "AWS::EC2::SecurityGroup").values()
        if g["Properties"]["GroupDescription"].startswith("API function")
    )
    assert {(rule["FromPort"], rule["ToPort"]) for rule in group["SecurityGroupEgress"]} == {(443, 443)}
    assert "SecurityGroupIngress" not in group


def test_iam_writes_only_inside_transactions(api: dict[str, Any]) -> None:
    policy = only(api, "AWS::IAM::Policy")
    assert policy["Roles"] == ["nitro-vault-api"]
    dynamo = [
        s
        for s in statements(policy["PolicyDocument"])
        if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))
    ]
    # GetItem, and BatchGetItem for POST /vaults/decrypt (tests/cdk/test_decrypt_batch.py).
    read_actions = ["dynamodb:BatchGetItem", "dynamodb:GetItem"]
    reads = [s for s in dynamo if sorted(as_list(s["Action"])) == read_actions]
    # Search's Query on the token indexes (tests/cdk/test_search_index.py).
    queries = [s for s in dynamo if as_list(s["Action"]) == ["dynamodb:Query"]]
    writes = [s for s in dynamo if s not in reads and s not in queries]
    assert len(reads) == 1 and "Condition" not in reads[0]
    assert len(writes) == 1
    assert sorted(as_list(writes[0]["Action"])) == [
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ]
    assert writes[0]["Condition"] == {"StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"}}
    for statement in statements(policy["PolicyDocument"]):
        assert not any(a.startswith("kms:") for a in as_list(statement["Action"])), (
            "KMS comes from the key policy"
        )


def test_proxy_method_requires_sigv4(api: dict[str, Any]) -> None:
    methods = resources(api, "AWS::ApiGateway::Method")
    assert len(methods) == 1, "only ANY on {proxy+}; the root has no method"
    method = next(iter(methods.values()))["Properties"]
    assert method["HttpMethod"] == "ANY"
    assert method["AuthorizationType"] == "AWS_IAM"
    assert method["Integration"]["Type"] == "AWS_PROXY"
    assert method["Integration"]["TimeoutInMillis"] == 10000
    resource = only(api, "AWS::ApiGateway::Resource")
    assert resource["PathPart"] == "{proxy+}"


def test_stage_v1_traced_throttled_and_logged(api: dict[str, Any]) -> None:
    stage = only(api, "AWS::ApiGateway::Stage")
    assert stage["StageName"] == "v1"
    assert stage["TracingEnabled"] is True
    assert (
        "DestinationArn" in stage["AccessLogSetting"]
        and "$context.requestId" in stage["AccessLogSetting"]["Format"]
    )
    settings = stage["MethodSettings"][0]
    assert settings["HttpMethod"] == "*" and settings["ResourcePath"] == "/*"
    assert settings["ThrottlingRateLimit"] == 100
    assert settings["ThrottlingBurstLimit"] == 200
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False


def test_rest_api_resource_policy_and_endpoint(api: dict[str, Any]) -> None:
    rest = only(api, "AWS::ApiGateway::RestApi")
    assert rest["EndpointConfiguration"]["Types"] == ["REGIONAL"]
    sids = {s["Sid"]: s for s in statements(rest["Policy"])}
    assert set(sids) == {"AccountPrincipals", "IdentityPerimeter"}
    assert sids["IdentityPerimeter"]["Effect"] == "Deny"
    assert sids["IdentityPerimeter"]["Condition"] == {"StringNotEquals": {"aws:PrincipalAccount": ACCOUNT}}


def test_gateway_invokes_the_live_alias(api: dict[str, Any]) -> None:
    alias = only(api, "AWS::Lambda::Alias")
    assert alias["Name"] == "live"
    permissions = [p["Properties"] for p in resources(api, "AWS::Lambda::Permission").values()]
    assert permissions and all(p["Principal"] == "apigateway.amazonaws.com" for p in permissions)


def test_the_audit_route_may_query_log_partitions_only(api: dict[str, Any]) -> None:
    # GET /vaults/{id}/audit is a Query on LOG##<vault id>; without it the route fails in AWS.
    policy = only(api, "AWS::IAM::Policy")
    audit = [s for s in statements(policy["PolicyDocument"]) if s.get("Sid") == "ReadAuditLogs"]
    assert len(audit) == 1
    assert as_list(audit[0]["Action"]) == ["dynamodb:Query"]
    assert audit[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["LOG##*"]}}
    resource = audit[0]["Resource"]
    # The table itself, not its indexes (those have their own statement).
    assert "index" not in json.dumps(resource)
