"""Identity: the permissions boundary and the two roles the key policy names.

This stack deploys first. The instance role and the API role get fixed names so that
the key stack can name them (and derive PCR3) before the tiers that use them exist;
the tiers attach their own least-privilege policies to these roles.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .config import VaultConfig
from .guardrails import acknowledge, managed_policy_finding, skip_checkov
from .naming import ROLE_PATH, Names

#: The ceiling for every vault role: the union of what the tiers' own policies grant.
#: A role's effective rights are the intersection, so a policy that later grows by
#: mistake still cannot reach IAM, KMS administration or anything not listed here.
BOUNDARY_ACTIONS = (
    "autoscaling:ExecutePolicy",
    "cloudformation:DescribeStackResource",
    "cloudformation:SignalResource",
    "cloudwatch:PutMetricData",
    # The API's batch decrypt reads every vault of a batch in one call.
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    # The API's search, on the blind-index token indexes only.
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:UpdateItem",
    "ec2:AssignPrivateIpAddresses",
    # Only for the provider that strips the VPC's default security group of its rules.
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeManagedPrefixLists",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:UnassignPrivateIpAddresses",
    "iam:GetRole",
    "kms:Decrypt",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    # The API's authorizer key (decision D16); its key policy lets only the API's role sign.
    "kms:GetPublicKey",
    "kms:Sign",
    "lambda:InvokeFunction",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:FilterLogEvents",
    "logs:GetLogEvents",
    "logs:PutLogEvents",
    "s3:GetObject",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
)

#: What the SSM agent needs (AmazonSSMManagedInstanceCore), only with remote access on.
REMOTE_ACCESS_ACTIONS = (
    "ec2messages:AcknowledgeMessage",
    "ec2messages:DeleteMessage",
    "ec2messages:FailMessage",
    "ec2messages:GetEndpoint",
    "ec2messages:GetMessages",
    "ec2messages:SendReply",
    "ssm:DescribeAssociation",
    "ssm:DescribeDocument",
    "ssm:GetDeployablePatchSnapshotForInstance",
    "ssm:GetDocument",
    "ssm:GetManifest",
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:ListAssociations",
    "ssm:ListInstanceAssociations",
    "ssm:PutComplianceItems",
    "ssm:PutConfigurePackageResult",
    "ssm:PutInventory",
    "ssm:UpdateAssociationStatus",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)


class IdentityStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: VaultConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = Names(config)
        actions = list(BOUNDARY_ACTIONS)
        if config.enable_remote_access:
            actions.extend(REMOTE_ACCESS_ACTIONS)

        self.boundary = iam.ManagedPolicy(
            self,
            "Boundary",
            managed_policy_name=names.boundary_name,
            path=ROLE_PATH,
            description="Permissions boundary of every nitro-vault role",
            statements=[
                iam.PolicyStatement(sid="VaultServiceActions", actions=sorted(actions), resources=["*"]),
            ],
        )
        acknowledge(
            self.boundary,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "A permissions boundary is a ceiling, not a grant: it lists actions and leaves "
                    "resources to the roles' own policies, which name them."
                ),
            },
        )
        ceiling = (
            "A permissions boundary grants nothing: it caps every vault role at these actions, and "
            "each role's own policy names the resources (those policies are checked)."
        )
        skip_checkov(self.boundary, {"CKV_AWS_108": ceiling, "CKV_AWS_111": ceiling})

        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            role_name=names.instance_role_name,
            path=ROLE_PATH,
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            permissions_boundary=self.boundary,
            description="Vault parent instances; the key policy allows decrypt only from an attested enclave",
        )
        if config.enable_remote_access:
            self.instance_role.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
            )
            acknowledge(
                self.instance_role,
                {
                    managed_policy_finding("AmazonSSMManagedInstanceCore"): (
                        "Remote access was asked for explicitly (vault:enableRemoteAccess); the "
                        "boundary still caps the role at the SSM agent's actions."
                    ),
                },
            )

        self.api_role = iam.Role(
            self,
            "ApiRole",
            role_name=names.api_role_name,
            path=ROLE_PATH,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            permissions_boundary=self.boundary,
            description="Vault API function; its policies are attached by the API stack",
        )
