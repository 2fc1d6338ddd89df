"""The optional shapes in one second app: region-agnostic, unsafe mode, private API, remote
access, replica key, artifacts from a pipeline bucket, audit retention and alarm e-mail; and
the key administrators of region-agnostic multi-region key stacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, DefaultStackSynthesizer, Environment
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from vault_cdk.config import UNSAFE_FLAG, load_config
from vault_cdk.key_stack import KeyStack, key_policy_params

from vault.infra.key_policy import ADMIN_SID, DECRYPT_SID, DENY_ADMIN_SID, build_key_policy

from .helpers import only, resources, scan_templates, statements
from .support import ACCOUNT, Synthesized, app_context, synthesize

PRIMARY_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
REPLICA_REGIONS = ["eu-west-1", "us-west-2"]
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
            "vault:replicaRegions": REPLICA_REGIONS,
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
        admin_role_arns=stack.admin_role_arns,
    )
    assert policy == stack.resolve(build_key_policy(params))
    # A replica, even region-agnostic, names the primary's region and the listed replica
    # regions (its own among them) by name: the same administrators as the primary's policy.
    admin = next(s for s in statements(policy) if s["Sid"] == ADMIN_SID)
    assert admin["Principal"] == {"AWS": [exec_role("us-east-1"), *map(exec_role, REPLICA_REGIONS)]}
    guard = next(s for s in statements(policy) if s["Sid"] == DENY_ADMIN_SID)
    assert guard["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": admin["Principal"]["AWS"]}}


def exec_role(region: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{region}"


def key_stack(root: Path, synthesizer: DefaultStackSynthesizer | None = None, **overrides: Any) -> KeyStack:
    """A key stack alone, region-agnostic, from the test context with ``overrides``."""
    context = app_context(root, region=None, **overrides)
    config = load_config(context)
    return KeyStack(
        App(context=context),
        "Key",
        config=config,
        vpc_id="vpc-0123456789abcdef0",
        env=Environment(account=config.account),
        synthesizer=synthesizer,
    )


def test_a_region_agnostic_primary_names_its_own_role_and_the_replicas(tmp_path: Path) -> None:
    stack = key_stack(tmp_path, **{"vault:replicaRegions": "us-west-2"})
    own = {"Fn::Sub": f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-${{AWS::Region}}"}
    assert stack.resolve(list(stack.admin_role_arns)) == [own, exec_role("us-west-2")]
    policy = only(Template.from_stack(stack).to_json(), "AWS::KMS::Key")["KeyPolicy"]
    admin = next(s for s in statements(policy) if s["Sid"] == ADMIN_SID)
    assert admin["Principal"] == {"AWS": [own, exec_role("us-west-2")]}


def test_the_bootstrap_qualifier_names_every_regions_role(tmp_path: Path) -> None:
    stack = key_stack(
        tmp_path, **{"vault:replicaRegions": "us-west-2", "@aws-cdk/core:bootstrapQualifier": "vault0001"}
    )
    assert stack.resolve(list(stack.admin_role_arns))[1] == exec_role("us-west-2").replace(
        "hnb659fds", "vault0001"
    )


class OneDeployerRole(DefaultStackSynthesizer):
    """A synthesizer whose execution role is one role for every region."""

    @property
    def cloud_formation_execution_role_arn(self) -> str:
        return f"arn:${{AWS::Partition}}:iam::{ACCOUNT}:role/deployer"


def test_a_custom_execution_role_cannot_name_other_regions(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not the default bootstrap"):
        key_stack(tmp_path, OneDeployerRole(), **{"vault:replicaRegions": "us-west-2"})
    # Alone in its region it needs no other region's role.
    alone = key_stack(tmp_path / "alone", OneDeployerRole())
    assert alone.admin_role_arns == (f"arn:aws:iam::{ACCOUNT}:role/deployer",)


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
