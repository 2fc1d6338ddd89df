"""The vault key policy against an explicit table: principals x every KMS action x attestation.

The policy is ``build_key_policy`` with the arguments the CDK app passes
(``vault_cdk.key_stack.key_policy_params`` for the production context of
``tests/cdk``); ``tests/cdk/test_key_policy.py`` runs the same matrix on the policy the
app synthesizes and checks both are one document. The table is
``tests.support.key_policy_matrix.expected``: only the attested instance role decrypts,
and only with a Recipient of a listed image; nobody re-encrypts, creates grants or gets a
plaintext data key; only the administrators -- the execution roles of the regions that
hold a copy of the key -- change the policy, replicate or delete the key, and no other
execution role does; IAM reaches nothing but key management. A multi-region deployment is
checked from both sides: the primary key's policy, on which a replica region's role calls
``ReplicateKey``, and the replica's.
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
    Principal,
    check,
    expected,
    kms_actions,
    matrix,
    recipient_actions,
)
from vault.infra.key_policy import (
    ADMIN_SID,
    DENY_ADMIN_SID,
    EnclaveMeasurements,
    KeyPolicyParams,
    build_key_policy,
)

ACCOUNT = "123456789012"
REGION = "eu-west-1"
REPLICA_REGION = "us-west-2"
FIXTURE = Path(__file__).resolve().parents[2] / "cdk" / "fixtures" / "measurements.json"
CURRENT = EnclaveMeasurements.from_file(FIXTURE)
# The second image of a rolling upgrade, as tests/cdk builds it (no PCR8).
FOLLOWING = EnclaveMeasurements(pcr0="1" * 96, pcr1="2" * 96, pcr2="3" * 96)


def exec_role(region: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{region}"


def deployment(
    *images: EnclaveMeasurements, region: str = REGION, other_regions: tuple[str, ...] = ()
) -> Deployment:
    return Deployment(
        account=ACCOUNT,
        region=region,
        instance_role_arn=f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-instance",
        api_role_arn=f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-api",
        api_function_arn=f"arn:aws:lambda:{region}:{ACCOUNT}:function:nitro-vault-api",
        admin_role_arn=exec_role(region),
        other_admin_role_arns=tuple(exec_role(other) for other in other_regions),
        vpc_id="vpc-0123456789abcdef0",
        images=images,
    )


def policy_for(target: Deployment) -> dict[str, Any]:
    """What ``key_policy_params`` hands the builder for the test app's context.

    The app lists the primary region's role first in every copy; the order changes no answer.
    """
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
            additional_admin_role_arns=target.other_admin_role_arns,
        )
    )


SINGLE = deployment(CURRENT)
ROLLING = deployment(CURRENT, FOLLOWING)
#: The primary key of a deployment with a replica in REPLICA_REGION, and that replica.
PRIMARY = deployment(CURRENT, other_regions=(REPLICA_REGION,))
REPLICA = deployment(CURRENT, region=REPLICA_REGION, other_regions=(REGION,))
TARGETS = (SINGLE, ROLLING, PRIMARY, REPLICA)


class _Policies:
    """Each target's policy, built when a test asks for it rather than once at import, so that
    the tests check the builder as it is when they run (``nox -s mutation`` swaps it per run)."""

    def __getitem__(self, target: Deployment) -> dict[str, Any]:
        return policy_for(target)


POLICIES = _Policies()
#: Every principal of every target: one target's administrator is another's stranger.
PRINCIPALS = tuple(dict.fromkeys(p for target in TARGETS for p in target.principals()))


def principal(target: Deployment, name: str) -> Principal:
    return next(p for p in target.principals() if p.name == name)


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


@pytest.mark.parametrize(
    "target", TARGETS, ids=["one-image", "rolling-upgrade", "multi-region-primary", "multi-region-replica"]
)
def test_every_principal_action_and_attestation(target: Deployment) -> None:
    # Exhaustive over the three dimensions the property is about, with every other
    # circumstance favourable: inside the VPC, a vault's context, IAM allowing everything.
    policy = POLICIES[target]
    allowed = {(c.principal.name, c.action) for c in matrix(target) if check(policy, target, c).allowed}
    decrypting = {name for name, action in allowed if action == "kms:Decrypt"}
    assert decrypting == {"instance"}
    administrators = {"administrator"} | (
        {"other-region-administrator"} if target.other_admin_role_arns else set()
    )
    for action in (
        "kms:PutKeyPolicy",
        "kms:ReplicateKey",
        "kms:UpdatePrimaryRegion",
        "kms:ScheduleKeyDeletion",
    ):
        assert {name for name, a in allowed if a == action} == administrators, action
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
    principal=st.sampled_from(PRINCIPALS),
    action=st.sampled_from(kms_actions()),
    attestation=st.sampled_from(Attestation),
    network=st.sampled_from(Network),
    vault_context=st.booleans(),
    key_pair_spec=st.sampled_from(["ECC_NIST_P384", "ECC_NIST_P521", "RSA_2048"]),
    from_function=st.booleans(),
    iam=st.sampled_from([(), ("kms:Decrypt",), ("kms:Describe*", "kms:Get*"), ("kms:*",), ("*",)]),
    session=st.booleans(),
)


@given(target=st.sampled_from(TARGETS), call=calls)
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
    replicate = Call(principal(PRIMARY, "other-region-administrator"), "kms:ReplicateKey", iam=())
    assert expected(PRIMARY, replicate)
    assert check(POLICIES[PRIMARY], PRIMARY, replicate).allowed


@pytest.mark.parametrize("session", [False, True], ids=["role", "cloudformation-session"])
def test_the_replica_regions_execution_role_replicates_the_primary(session: bool) -> None:
    # CloudFormation in the replica region calls ReplicateKey on the primary key with that
    # region's execution role; the primary's policy decides. No IAM permission is needed.
    replicator = principal(PRIMARY, "other-region-administrator")
    assert replicator.arn == exec_role(REPLICA_REGION)
    for action in ("kms:ReplicateKey", "kms:UpdatePrimaryRegion", "kms:DescribeKey"):
        assert check(POLICIES[PRIMARY], PRIMARY, Call(replicator, action, iam=(), session=session)).allowed
    # The copy it creates passes the lockout check: the replica's policy lets its creator
    # put a policy, and names the primary region's role for UpdatePrimaryRegion.
    creator = principal(REPLICA, "administrator")
    assert creator.arn == replicator.arn
    assert check(
        POLICIES[REPLICA], REPLICA, Call(creator, "kms:PutKeyPolicy", iam=(), session=session)
    ).allowed
    primary_role = principal(REPLICA, "other-region-administrator")
    assert check(POLICIES[REPLICA], REPLICA, Call(primary_role, "kms:UpdatePrimaryRegion", iam=())).allowed
    # Nobody else, whatever IAM allows: not a stranger, the vault's own roles, nor another
    # execution role of the account.
    for name in (
        "unknown",
        "instance",
        "api",
        "network-excluded",
        "unlisted-region-exec-role",
        "other-qualifier-exec-role",
    ):
        call = Call(principal(PRIMARY, name), "kms:ReplicateKey", iam=("*",), session=session)
        decision = check(POLICIES[PRIMARY], PRIMARY, call)
        assert decision.reason == f"explicitly denied by statement {DENY_ADMIN_SID}", (name, decision.reason)


def test_a_policy_without_the_replica_region_refuses_it() -> None:
    # A single-region deployment names only its own role: the replica region's is refused,
    # which is why the primary must be deployed with the replica regions listed first.
    replicator = principal(PRIMARY, "other-region-administrator")
    decision = check(POLICIES[SINGLE], SINGLE, Call(replicator, "kms:ReplicateKey", iam=("*",)))
    assert decision.reason == f"explicitly denied by statement {DENY_ADMIN_SID}"


def test_every_copy_names_the_same_administrators() -> None:
    def administrators(policy: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
        allow = next(s for s in policy["Statement"] if s["Sid"] == ADMIN_SID)
        deny = next(s for s in policy["Statement"] if s["Sid"] == DENY_ADMIN_SID)
        named = deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        return frozenset(allow["Principal"]["AWS"]), frozenset(named)

    both = frozenset({exec_role(REGION), exec_role(REPLICA_REGION)})
    assert administrators(POLICIES[PRIMARY]) == administrators(POLICIES[REPLICA]) == (both, both)
