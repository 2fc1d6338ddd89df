"""Data-perimeter deny statements for resource policies (the table, the topic, the API).

They mirror the first three statements of the key policy (spec 5.4): only principals of
this account, no confused deputy, and only from inside the vault VPC unless the caller is
an AWS service or carries the ``dp:exclude:network`` tag (the deployment role must).
"""

from __future__ import annotations

from typing import Any

from vault.infra.key_policy import NETWORK_EXCLUDE_TAG


def identity_perimeter(actions: str, account: str, resource: Any = "*") -> dict[str, Any]:
    return {
        "Sid": "IdentityPerimeter",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": resource,
        "Condition": {
            "StringNotEqualsIfExists": {"aws:PrincipalAccount": account},
            "BoolIfExists": {"aws:PrincipalIsAWSService": "false"},
        },
    }


def confused_deputy(actions: str, account: str, resource: Any = "*") -> dict[str, Any]:
    return {
        "Sid": "ConfusedDeputyProtection",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": resource,
        "Condition": {
            "StringNotEqualsIfExists": {"aws:SourceAccount": account},
            "Null": {"aws:SourceAccount": "false"},
            "Bool": {"aws:PrincipalIsAWSService": "true"},
        },
    }


def network_perimeter(
    actions: str, account: str, vpc_id: str, partition: str, resource: Any = "*"
) -> dict[str, Any]:
    return {
        "Sid": "NetworkPerimeter",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": actions,
        "Resource": resource,
        "Condition": {
            "StringNotEqualsIfExists": {
                "aws:SourceVpc": vpc_id,
                f"aws:PrincipalTag/{NETWORK_EXCLUDE_TAG}": "true",
            },
            "BoolIfExists": {"aws:PrincipalIsAWSService": "false", "aws:ViaAWSService": "false"},
            "ArnNotLikeIfExists": {
                "aws:PrincipalArn": f"arn:{partition}:iam::{account}:role/aws-service-role/*"
            },
        },
    }
