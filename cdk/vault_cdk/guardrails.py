"""App-wide rules: every IAM role lives under ``/vault/`` with the permissions boundary.

Roles that CDK creates on our behalf (custom-resource providers, the API Gateway logging
role, the VPC flow-log role) are not built by our code, so the rule is an aspect that
visits every role in the tree rather than a convention each stack must remember.
"""

from __future__ import annotations

from collections.abc import Mapping

import jsii
from aws_cdk import Acknowledgment, CfnResource, IAspect, Token, Validations
from constructs import IConstruct

from .naming import ROLE_PATH

ROLE_TYPE = "AWS::IAM::Role"


@jsii.implements(IAspect)
class RoleGuardrails:
    """Put every role under the vault path and behind the permissions boundary."""

    def __init__(self, boundary_arn: str) -> None:
        self._boundary_arn = boundary_arn

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or node.cfn_resource_type != ROLE_TYPE:
            return
        node.add_property_override("Path", ROLE_PATH)
        node.add_property_override("PermissionsBoundary", self._boundary_arn)


def acknowledge(scope: IConstruct, findings: Mapping[str, str]) -> None:
    """Acknowledge cdk-nag findings on ``scope`` (and its children), each with its reason."""
    Validations.of(scope).acknowledge(
        *(Acknowledgment(id=rule, reason=reason) for rule, reason in findings.items())
    )


def cfn_resource(scope: IConstruct) -> CfnResource:
    """The CloudFormation resource behind an L2 construct (its ``default_child``)."""
    resource = scope.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{scope.node.path} is not backed by one CloudFormation resource")
    return resource


def skip_checkov(scope: IConstruct, findings: Mapping[str, str]) -> None:
    """Exempt one resource from checkov checks, each with its reason, in the template's Metadata.

    For an exception that holds for this resource only; checks skipped for the whole
    deployment are listed, with their reasons, in ``cdk/.checkov.yaml``.
    """
    resource = scope if isinstance(scope, CfnResource) else cfn_resource(scope)
    resource.add_metadata(
        "checkov", {"skip": [{"id": check, "comment": reason} for check, reason in findings.items()]}
    )


def nag_text(value: str) -> str:
    """How cdk-nag writes a stack's region or account in finding ids: literal, or ``<AWS::...>``."""
    if not Token.is_unresolved(value):
        return value
    if "Region" in value:
        return "<AWS::Region>"
    if "AccountId" in value:
        return "<AWS::AccountId>"
    return value


def managed_policy_finding(policy_name: str) -> str:
    """The cdk-nag finding id for a role that uses an AWS managed policy (path included in the name)."""
    return f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy_name}]"
