"""The optional shapes in one second app: region-agnostic, unsafe mode, private API, remote
access, replica key, artifacts from a pipeline bucket, audit retention and alarm e-mail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cdk_nag import AwsSolutionsChecks
from vault_cdk.config import UNSAFE_FLAG
from vault_cdk.key_stack import key_policy_params

from vault.infra.key_policy import ADMIN_SID, DECRYPT_SID, build_key_policy

from .helpers import only, resources, scan_templates, statements
from .support import ACCOUNT, Synthesized, synthesize

PRIMARY_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
VPCE = "vpce-0123456789abcdef0"


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    root: Path = tmp_path_factory.mktemp("variant")
    yield synthesize(
        root,
        region=None,
        **{
            "vault:measurements": "",
            UNSAFE_FLAG: True,
            "vault:apiVpcEndpointId": VPCE,
            "vault:enableRemoteAccess": True,
            "vault:primaryKeyArn": PRIMARY_KEY,
            "vault:artifactsDir": "",
            "vault:artifactBucket": "vault-pipeline-artifacts",
            "vault:artifactKey": "release/artifacts.zip",
            "vault:auditRetentionDays": 30,
            "vault:alarmEmail": "security@example.com",
        },
    )


def test_region_agnostic_stacks(variant: Synthesized) -> None:
    assert variant.stacks.config.region is None
    subnet = next(iter(resources(variant.raw("network"), "AWS::EC2::Subnet").values()))
    assert "Fn::GetAZs" in str(subnet["Properties"]["AvailabilityZone"])


def test_unsafe_mode_drops_attestation_and_says_so(variant: Synthesized) -> None:
    key = variant.raw("key")
    replica = only(key, "AWS::KMS::ReplicaKey")
    assert replica["PrimaryKeyArn"] == PRIMARY_KEY
    assert not resources(key, "AWS::KMS::Key")
    decrypt = next(s for s in statements(replica["KeyPolicy"]) if s["Sid"] == DECRYPT_SID)
    assert "StringEqualsIgnoreCase" not in decrypt["Condition"]
    assert "UNSAFE" in key["Description"]
    assert key["Outputs"]["AttestedDecrypt"]["Value"] == "false"
    warnings = variant.messages("key", "warning")
    assert len(warnings) == 1 and "WITHOUT enclave attestation" in warnings[0]


def test_unsafe_policy_is_still_the_builders(variant: Synthesized) -> None:
    stack = variant.stacks.key
    policy = only(variant.raw("key"), "AWS::KMS::ReplicaKey")["KeyPolicy"]
    vpc = next(s for s in statements(policy) if s["Sid"] == "NetworkPerimeter")
    params = key_policy_params(
        variant.stacks.config,
        region=stack.region,
        vpc_id=vpc["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"],
        admin_role_arn=stack.admin_role_arn,
    )
    assert policy == stack.resolve(build_key_policy(params))
    # Region-agnostic: CloudFormation substitutes the region into the administrator's ARN.
    admin = next(s for s in statements(policy) if s["Sid"] == ADMIN_SID)
    execution_role = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-${{AWS::Region}}"
    assert admin["Principal"] == {"AWS": {"Fn::Sub": execution_role}}


def test_private_api_and_audit_retention(variant: Synthesized) -> None:
    api = variant.raw("api")
    rest = only(api, "AWS::ApiGateway::RestApi")
    assert rest["EndpointConfiguration"] == {"Types": ["PRIVATE"], "VpcEndpointIds": [VPCE]}
    only_vpce = next(s for s in statements(rest["Policy"]) if s["Sid"] == "OnlyThroughVpcEndpoint")
    assert only_vpce["Condition"] == {"StringNotEquals": {"aws:SourceVpce": VPCE}}
    env = only(api, "AWS::Lambda::Function")["Environment"]["Variables"]
    assert env["AUDIT_RETENTION_DAYS"] == "30"


def test_remote_access_adds_the_ssm_endpoints(variant: Synthesized) -> None:
    endpoints = resources(variant.raw("network"), "AWS::EC2::VPCEndpoint")
    assert len(endpoints) == 7
    boundary = only(variant.raw("identity"), "AWS::IAM::ManagedPolicy")
    assert "ssm:UpdateInstanceInformation" in boundary["PolicyDocument"]["Statement"][0]["Action"]


def test_artifacts_from_a_pipeline_bucket(variant: Synthesized) -> None:
    tier = variant.raw("decryption")
    assert not resources(tier, "AWS::S3::Bucket")
    policy = next(
        p["Properties"] for n, p in resources(tier, "AWS::IAM::Policy").items() if n.startswith("Instance")
    )
    artifacts = next(s for s in statements(policy["PolicyDocument"]) if s["Sid"] == "Artifacts")
    assert "vault-pipeline-artifacts/release/artifacts.zip" in str(artifacts["Resource"])


def test_alarm_email_subscription(variant: Synthesized) -> None:
    subscription = only(variant.raw("canary"), "AWS::SNS::Subscription")
    assert subscription == {**subscription, "Protocol": "email", "Endpoint": "security@example.com"}


def test_nag_is_clean_in_this_shape_too(variant: Synthesized) -> None:
    report = AwsSolutionsChecks().validate_scope(variant.stacks.identity.node.root)
    assert [v.rule_name for v in report.violations] == []


def test_cfn_lint_and_checkov_pass_the_optional_shapes(variant: Synthesized) -> None:
    # The session scans the production-shaped synth; this covers the resources only options add.
    scan_templates(variant.outdir)
