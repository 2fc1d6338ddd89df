"""The vault key policy against an explicit table: principals x every KMS action x attestation.

The policy is ``build_key_policy`` with the arguments the CDK app passes
(``vault_cdk.key_stack.key_policy_params`` for the production context of
``tests/cdk``); ``tests/cdk/test_key_policy.py`` runs the same matrix on the policy the
app synthesizes and checks both are one document. The table is
``tests.support.key_policy_matrix.expected``: only the attested instance role decrypts,
and only with a Recipient of a listed image; nobody re-encrypts, creates grants or gets a
plaintext data key; only the administrator changes the policy, replicates or deletes the
key; IAM reaches nothing but key management.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.aws.kms.policy import evaluate
from tests.support.key_policy_matrix import (
    Attestation,
    Call,
    Deployment,
    Network,
    check,
    expected,
    kms_actions,
    matrix,
    recipient_actions,
)
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy

ACCOUNT = "123456789012"
REGION = "eu-west-1"
FIXTURE = Path(__file__).resolve().parents[2] / "cdk" / "fixtures" / "measurements.json"
CURRENT = EnclaveMeasurements.from_file(FIXTURE)
# The second image of a rolling upgrade, as tests/cdk builds it (no PCR8).
FOLLOWING = EnclaveMeasurements(pcr0="1" * 96, pcr1="2" * 96, pcr2="3" * 96)


def deployment(*images: EnclaveMeasurements) -> Deployment:
    return Deployment(
        account=ACCOUNT,
        region=REGION,
        instance_role_arn=f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-instance",
        api_role_arn=f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-api",
        api_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nitro-vault-api",
        admin_role_arn=f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}",
        vpc_id="vpc-0123456789abcdef0",
        images=images,
    )


def policy_for(target: Deployment) -> dict[str, Any]:
    """What ``key_policy_params`` hands the builder for the test app's context."""
    return build_key_policy(
        KeyPolicyParams(
            account_id=target.account,
            instance_role_arn=target.instance_role_arn,
            api_role_arn=target.api_role_arn,
            measurements=target.images[0],
            additional_measurements=target.images[1:],
            api_function_arn=target.api_function_arn,
            vpc_id=target.vpc_id,
            admin_role_arn=target.admin_role_arn,
        )
    )


SINGLE = deployment(CURRENT)
ROLLING = deployment(CURRENT, FOLLOWING)
POLICIES = {SINGLE: policy_for(SINGLE), ROLLING: policy_for(ROLLING)}


def test_the_action_list_is_botocores_and_complete() -> None:
    actions = kms_actions()
    assert len(actions) >= 50
    for action in (
        "kms:Decrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:CreateGrant",
        "kms:PutKeyPolicy",
    ):
        assert action in actions
    assert "kms:ReEncrypt" not in actions  # an operation, not an IAM action
    assert {"kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair"} <= recipient_actions()


@pytest.mark.parametrize("target", [SINGLE, ROLLING], ids=["one-image", "rolling-upgrade"])
def test_every_principal_action_and_attestation(target: Deployment) -> None:
    # Exhaustive over the three dimensions the property is about, with every other
    # circumstance favourable: inside the VPC, a vault's context, IAM allowing everything.
    allowed = {
        (c.principal.name, c.action) for c in matrix(target) if check(POLICIES[target], target, c).allowed
    }
    decrypting = {name for name, action in allowed if action == "kms:Decrypt"}
    assert decrypting == {"instance"}
    assert {name for name, action in allowed if action == "kms:PutKeyPolicy"} == {"administrator"}
    never = {
        "kms:CreateGrant",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyPair",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:Encrypt",
    }
    assert not {action for _, action in allowed} & never


calls = st.builds(
    Call,
    principal=st.sampled_from(SINGLE.principals()),
    action=st.sampled_from(kms_actions()),
    attestation=st.sampled_from(Attestation),
    network=st.sampled_from(Network),
    vault_context=st.booleans(),
    key_pair_spec=st.sampled_from(["ECC_NIST_P384", "ECC_NIST_P521", "RSA_2048"]),
    from_function=st.booleans(),
    iam=st.sampled_from([(), ("kms:Decrypt",), ("kms:Describe*", "kms:Get*"), ("kms:*",), ("*",)]),
    session=st.booleans(),
)


@given(target=st.sampled_from([SINGLE, ROLLING]), call=calls)
def test_the_policy_answers_as_the_table(target: Deployment, call: Call) -> None:
    check(POLICIES[target], target, call)


@given(call=calls)
def test_an_image_the_policy_does_not_list_does_not_decrypt(call: Call) -> None:
    # A document of the image being rolled in, against the policy that lists only the
    # current one: as good as a wrong image.
    decision = evaluate(POLICIES[SINGLE], replace(call, attestation=Attestation.FOLLOWING).request(ROLLING))
    assert decision.allowed == expected(SINGLE, replace(call, attestation=Attestation.WRONG))


def test_the_table_is_not_vacuous() -> None:
    # The favourable cases the table allows do occur, so a policy that refused everything fails.
    instance, api, administrator = (
        next(p for p in SINGLE.principals() if p.name == name)
        for name in ("instance", "api", "administrator")
    )
    for call in (
        Call(instance, "kms:Decrypt", Attestation.CURRENT),
        Call(api, "kms:GenerateDataKeyPairWithoutPlaintext"),
        Call(administrator, "kms:PutKeyPolicy", iam=()),
        Call(instance, "kms:DescribeKey"),
    ):
        assert expected(SINGLE, call)
        assert check(POLICIES[SINGLE], SINGLE, call).allowed
