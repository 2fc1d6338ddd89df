"""The API's authorizer key (decision D16): what the CDK app deploys and the emulator creates.

An asymmetric KMS key (``ECC_NIST_P256``, ``SIGN_VERIFY``) that signs each decrypt's
authorization (:mod:`vault.common.authorization`). Its private half never leaves KMS;
its policy lets the API's role ``kms:Sign`` (with the one algorithm the enclave expects)
and read the public key, and nobody else sign: an explicit deny holds whatever IAM
policies or grants say. The account root keeps what it needs to administer and read the
key, never ``Sign``, and no grant can be created on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vault.common.authorization import KEY_SPEC, SIGNING_ALGORITHM

KEY_USAGE = "SIGN_VERIFY"
ALIAS = "alias/nitro-vault-authorizer"
DESCRIPTION = "Signs the Nitro vault API's decrypt authorizations"
SIGN_SID = "AllowApiSign"
DENY_OTHER_SIGN_SID = "DenySignToAllButTheApi"
DENY_GRANTS_SID = "DenyGrants"
ROOT_SID = "AllowAccountToAdministerButNotSign"
#: What the account root may do with the key: read and administer it, never sign.
ROOT_ACTIONS = (
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:GetPublicKey",
    "kms:PutKeyPolicy",
    "kms:ListResourceTags",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:UpdateKeyDescription",
)


@dataclass(frozen=True)
class AuthorizerKeyParams:
    account_id: str
    api_role_arn: str
    partition: str = "aws"


def build_authorizer_key_policy(params: AuthorizerKeyParams) -> dict[str, Any]:
    root = f"arn:{params.partition}:iam::{params.account_id}:root"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": ROOT_SID,
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": list(ROOT_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": SIGN_SID,
                "Effect": "Allow",
                "Principal": {"AWS": params.api_role_arn},
                "Action": ["kms:Sign", "kms:GetPublicKey", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:CallerAccount": params.account_id},
                    # Sign only with the algorithm the enclave verifies (GetPublicKey and
                    # DescribeKey carry no algorithm, so the condition is only for Sign).
                    "StringEqualsIfExists": {"kms:SigningAlgorithm": SIGNING_ALGORITHM},
                },
            },
            {
                # Nobody but the API's role signs, whatever IAM policies or grants allow.
                "Sid": DENY_OTHER_SIGN_SID,
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:Sign",
                "Resource": "*",
                "Condition": {
                    "ArnNotEquals": {"aws:PrincipalArn": params.api_role_arn},
                },
            },
            {
                "Sid": DENY_GRANTS_SID,
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:CreateGrant",
                "Resource": "*",
            },
        ],
    }


def create_key_arguments() -> dict[str, Any]:
    """``CreateKey`` arguments for the key (the emulator's provisioning uses them)."""
    return {"KeySpec": KEY_SPEC, "KeyUsage": KEY_USAGE, "Description": DESCRIPTION}
