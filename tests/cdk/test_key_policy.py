"""The key stack: the decrypt statement is bound to the enclave's measurements (decision D13).

The bridge to the emulator: the synthesized policy is exactly what ``build_key_policy``
returns for the same measurements and role ARNs, and the emulator's KMS front enforces
that same builder's output. The synthesized policy also answers every principal x every
KMS action x every kind of attestation as the table in
``tests/support/key_policy_matrix.py`` says (decision D17), for a single-region
deployment and for both copies of a multi-region one (a primary with
``vault:replicaRegions`` and the replica stack with ``vault:primaryKeyArn``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from vault_cdk.key_stack import key_policy_params
from vault_cdk.naming import Names

from tests.support.key_policy_matrix import Call, Deployment, Network, check, matrix
from vault.infra.key_policy import (
    ADMIN_SID,
    DECRYPT_SID,
    DENY_ADMIN_SID,
    DENY_REWRAP_SID,
    DENY_UNATTESTED_SID,
    ROOT_ACTIONS,
    ROOT_SID,
    EnclaveMeasurements,
    attestation_conditions,
    build_key_policy,
    pcr3_for_role_arn,
)

from .helpers import as_list, only, statements
from .support import ACCOUNT, MEASUREMENTS, REGION, Synthesized, next_image_measurements, synthesize

INSTANCE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-instance"
API_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/vault/nitro-vault-api"


@pytest.fixture(scope="module")
def key(vault: Synthesized) -> dict[str, Any]:
    return dict(only(vault.raw("key"), "AWS::KMS::Key"))


@pytest.fixture(scope="module")
def policy(key: dict[str, Any]) -> dict[str, Any]:
    return key["KeyPolicy"]  # type: ignore[no-any-return]


def by_sid(policy: dict[str, Any], sid: str) -> dict[str, Any]:
    matches = [s for s in statements(policy) if s.get("Sid") == sid]
    assert len(matches) == 1, sid
    return dict(matches[0])


def test_key_is_multi_region_symmetric_and_rotated(key: dict[str, Any], vault: Synthesized) -> None:
    assert key["MultiRegion"] is True
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert key["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert key["EnableKeyRotation"] is True
    assert key["PendingWindowInDays"] == 7
    resource = next(iter(vault.raw("key")["Resources"].values()))
    assert resource["DeletionPolicy"] == "Retain"
    alias = only(vault.raw("key"), "AWS::KMS::Alias")
    assert alias["AliasName"] == "alias/nitro-vault-key"


def test_decrypt_conditions_are_exactly_the_measurements(policy: dict[str, Any]) -> None:
    measured = EnclaveMeasurements.from_file(MEASUREMENTS)
    statement = by_sid(policy, DECRYPT_SID)
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Principal"] == {"AWS": INSTANCE_ROLE_ARN}
    assert statement["Condition"]["StringEqualsIgnoreCase"] == {
        "kms:RecipientAttestation:ImageSha384": measured.pcr0,
        "kms:RecipientAttestation:PCR1": measured.pcr1,
        "kms:RecipientAttestation:PCR2": measured.pcr2,
        "kms:RecipientAttestation:PCR3": pcr3_for_role_arn(INSTANCE_ROLE_ARN),
        "kms:RecipientAttestation:PCR8": measured.pcr8,
    }
    assert statement["Condition"]["StringEquals"] == {"kms:CallerAccount": ACCOUNT}


def test_pcr3_is_derived_from_the_fixed_instance_role(vault: Synthesized) -> None:
    names = Names(vault.stacks.config)
    assert names.instance_role_arn == INSTANCE_ROLE_ARN
    assert names.pcr3 == pcr3_for_role_arn(INSTANCE_ROLE_ARN)
    outputs = vault.raw("decryption")["Outputs"]
    assert outputs["Pcr3"]["Value"] == names.pcr3


def test_no_statement_lets_iam_reach_key_material(policy: dict[str, Any]) -> None:
    root = by_sid(policy, ROOT_SID)
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert sorted(as_list(root["Action"])) == sorted(ROOT_ACTIONS)
    # No allow is open-ended: every action an allow names is listed by name.
    for statement in statements(policy):
        if statement["Effect"] == "Allow":
            assert "NotAction" not in statement and "NotPrincipal" not in statement, statement["Sid"]
            assert not any("*" in a for a in as_list(statement["Action"])), statement["Sid"]
    decrypting = [
        s for s in statements(policy) if s["Effect"] == "Allow" and "kms:Decrypt" in as_list(s["Action"])
    ]
    assert [s["Sid"] for s in decrypting] == [DECRYPT_SID]
    # The explicit denies hold whatever IAM or a grant would allow.
    never = by_sid(policy, DENY_REWRAP_SID)
    assert never["Effect"] == "Deny" and "Condition" not in never
    assert {"kms:CreateGrant", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey"} <= set(
        as_list(never["Action"])
    )
    unattested = by_sid(policy, DENY_UNATTESTED_SID)
    assert unattested["Condition"] == {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}


def test_the_deploying_role_administers_the_key(vault: Synthesized, policy: dict[str, Any]) -> None:
    # CloudFormation creates and updates the key with the bootstrap execution role, so the
    # policy must let that role call PutKeyPolicy (KMS's lockout check); nobody else may.
    execution_role = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
    assert vault.stacks.key.admin_role_arn == execution_role
    assert vault.stacks.key.admin_role_arns == (execution_role,)
    admin = by_sid(policy, ADMIN_SID)
    assert admin["Principal"] == {"AWS": execution_role}
    assert "kms:PutKeyPolicy" in admin["Action"]
    guard = by_sid(policy, DENY_ADMIN_SID)
    assert guard["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": execution_role}}
    assert "kms:PutKeyPolicy" in guard["Action"] and "kms:ReplicateKey" in guard["Action"]


def deployment_of(synthesized: Synthesized, vpc_id: str) -> Deployment:
    config = synthesized.stacks.config
    assert config.region is not None
    names = Names(config)
    key = synthesized.stacks.key
    return Deployment(
        account=config.account,
        region=config.region,
        instance_role_arn=names.instance_role_arn,
        api_role_arn=names.api_role_arn,
        api_function_arn=f"arn:aws:lambda:{config.region}:{config.account}:function:{names.api_function_name}",
        admin_role_arn=key.admin_role_arn,
        other_admin_role_arns=tuple(arn for arn in key.admin_role_arns if arn != key.admin_role_arn),
        vpc_id=vpc_id,
        images=tuple(m for m in (config.measurements, *config.additional_measurements) if m is not None),
    )


def with_vpc(policy: dict[str, Any], vpc_id: str) -> dict[str, Any]:
    """The policy as deployed: the cross-stack import of the VPC id replaced by a value."""
    text = json.dumps(policy)
    imported = json.dumps(
        by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
    )
    assert '"Fn::ImportValue"' in imported
    deployed: dict[str, Any] = json.loads(text.replace(imported, json.dumps(vpc_id)))
    assert "Fn::" not in json.dumps(deployed)
    return deployed


@pytest.mark.parametrize("shape", ["production", "rolling"])
def test_the_synthesized_policy_answers_as_the_table(
    shape: str, vault: Synthesized, rolling: tuple[Synthesized, Path]
) -> None:
    synthesized = vault if shape == "production" else rolling[0]
    policy = only(synthesized.raw("key"), "AWS::KMS::Key")["KeyPolicy"]
    vpc_id = "vpc-0123456789abcdef0"
    target = deployment_of(synthesized, vpc_id)
    assert len(target.images) == (1 if shape == "production" else 2)
    deployed = with_vpc(dict(policy), vpc_id)
    allowed = {(c.principal.name, c.action) for c in matrix(target) if check(deployed, target, c).allowed}
    assert {name for name, action in allowed if action == "kms:Decrypt"} == {"instance"}
    assert {name for name, action in allowed if action == "kms:PutKeyPolicy"} == {"administrator"}
    # Outside the VPC only the network-excluded roles get anything at all.
    outside = {
        c.principal.name
        for c in matrix(target)
        if check(deployed, target, replace(c, network=Network.OUTSIDE)).allowed
    }
    assert outside == {
        "administrator",
        "network-excluded",
        "unlisted-region-exec-role",
        "other-qualifier-exec-role",
    }


def test_perimeter_denies_come_first(policy: dict[str, Any]) -> None:
    sids = [s["Sid"] for s in statements(policy)]
    assert sids[:3] == ["IdentityPerimeter", "ConfusedDeputyProtection", "NetworkPerimeter"]
    assert all(s["Effect"] == "Deny" for s in list(statements(policy))[:3])


def test_synthesized_policy_equals_the_shared_builder(vault: Synthesized, policy: dict[str, Any]) -> None:
    # The VPC id is a cross-stack import; the builder places it verbatim, so hand it back.
    vpc_id = by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
    params = key_policy_params(
        vault.stacks.config, region=REGION, vpc_id=vpc_id, admin_role_arns=vault.stacks.key.admin_role_arns
    )
    assert params.instance_role_arn == INSTANCE_ROLE_ARN
    assert params.api_role_arn == API_ROLE_ARN
    assert params.measurements == EnclaveMeasurements.from_file(MEASUREMENTS)
    assert policy == build_key_policy(params)


@pytest.fixture(scope="module")
def rolling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Synthesized, Path]]:
    root: Path = tmp_path_factory.mktemp("rolling")
    following = next_image_measurements(root)
    yield synthesize(root, nag=False, **{"vault:measurements": f"{MEASUREMENTS},{following}"}), following


def test_two_measurement_files_give_two_complete_decrypt_statements(
    rolling: tuple[Synthesized, Path],
) -> None:
    synthesized, following = rolling
    policy = only(synthesized.raw("key"), "AWS::KMS::Key")["KeyPolicy"]
    decrypting = [
        s for s in statements(policy) if s.get("Action") == "kms:Decrypt" and s["Effect"] == "Allow"
    ]
    assert [s["Sid"] for s in decrypting] == [DECRYPT_SID, f"{DECRYPT_SID}2"]
    pcr3 = pcr3_for_role_arn(INSTANCE_ROLE_ARN)
    for statement, path in zip(decrypting, (MEASUREMENTS, following), strict=True):
        image = EnclaveMeasurements.from_file(path)
        assert statement["Principal"] == {"AWS": INSTANCE_ROLE_ARN}
        # Each statement pins one image's PCRs, never a list of values per PCR.
        assert statement["Condition"]["StringEqualsIgnoreCase"] == attestation_conditions(image, pcr3)
    assert synthesized.stacks.config.measurements == EnclaveMeasurements.from_file(MEASUREMENTS)


def test_the_rolling_policy_equals_the_shared_builder(rolling: tuple[Synthesized, Path]) -> None:
    synthesized, following = rolling
    policy = only(synthesized.raw("key"), "AWS::KMS::Key")["KeyPolicy"]
    vpc_id = by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
    params = key_policy_params(
        synthesized.stacks.config,
        region=REGION,
        vpc_id=vpc_id,
        admin_role_arns=synthesized.stacks.key.admin_role_arns,
    )
    assert params.additional_measurements == (EnclaveMeasurements.from_file(following),)
    assert policy == build_key_policy(params)


REPLICA_REGION = "us-west-2"
PRIMARY_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
VPC_ID = "vpc-0123456789abcdef0"


def exec_role(region: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{region}"


@dataclass(frozen=True)
class MultiRegion:
    primary: Synthesized
    replica: Synthesized

    def policy(self, copy: str) -> dict[str, Any]:
        synthesized, kind = (
            (self.primary, "AWS::KMS::Key") if copy == "primary" else (self.replica, "AWS::KMS::ReplicaKey")
        )
        return with_vpc(dict(only(synthesized.raw("key"), kind)["KeyPolicy"]), VPC_ID)

    def deployment(self, copy: str) -> Deployment:
        return deployment_of(self.primary if copy == "primary" else self.replica, VPC_ID)


@pytest.fixture(scope="module")
def multi_region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiRegion]:
    # The same list of replica regions in both deployments, as the README says.
    primary = synthesize(
        tmp_path_factory.mktemp("primary"), nag=False, **{"vault:replicaRegions": [REPLICA_REGION]}
    )
    replica = synthesize(
        tmp_path_factory.mktemp("replica"),
        nag=False,
        region=REPLICA_REGION,
        **{"vault:primaryKeyArn": PRIMARY_KEY_ARN, "vault:replicaRegions": REPLICA_REGION},
    )
    yield MultiRegion(primary, replica)


def test_every_copy_names_every_regions_execution_role(multi_region: MultiRegion) -> None:
    both = [exec_role(REGION), exec_role(REPLICA_REGION)]
    assert multi_region.primary.stacks.key.admin_role_arn == exec_role(REGION)
    assert multi_region.replica.stacks.key.admin_role_arn == exec_role(REPLICA_REGION)
    replica = only(multi_region.replica.raw("key"), "AWS::KMS::ReplicaKey")
    assert replica["PrimaryKeyArn"] == PRIMARY_KEY_ARN
    for copy in ("primary", "replica"):
        policy = multi_region.policy(copy)
        # Exact ARNs, the primary region's first, in both copies; no pattern anywhere.
        assert by_sid(policy, ADMIN_SID)["Principal"] == {"AWS": both}, copy
        guard = by_sid(policy, DENY_ADMIN_SID)
        assert guard["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": both}}, copy
        assert "*" not in json.dumps(by_sid(policy, ADMIN_SID)["Principal"])


@pytest.mark.parametrize("copy", ["primary", "replica"])
def test_both_copies_answer_as_the_table(multi_region: MultiRegion, copy: str) -> None:
    target = multi_region.deployment(copy)
    policy = multi_region.policy(copy)
    assert target.other_admin_role_arns == (exec_role(REPLICA_REGION if copy == "primary" else REGION),)
    allowed = {(c.principal.name, c.action) for c in matrix(target) if check(policy, target, c).allowed}
    for action in ("kms:PutKeyPolicy", "kms:ReplicateKey", "kms:UpdatePrimaryRegion"):
        assert {name for name, a in allowed if a == action} == {
            "administrator",
            "other-region-administrator",
        }, action
    assert {name for name, action in allowed if action == "kms:Decrypt"} == {"instance"}


def test_the_replica_regions_role_may_replicate_the_primary(multi_region: MultiRegion) -> None:
    # What CloudFormation does in the replica region: ReplicateKey on the primary key, as a
    # session of that region's execution role, authorized by the primary key's policy...
    primary = multi_region.deployment("primary")
    policy = multi_region.policy("primary")
    replicator = next(p for p in primary.principals() if p.name == "other-region-administrator")
    assert replicator.arn == exec_role(REPLICA_REGION)
    assert check(policy, primary, Call(replicator, "kms:ReplicateKey", iam=(), session=True)).allowed
    # ... then the new replica's policy must let its creator put a policy (the lockout check).
    replica = multi_region.deployment("replica")
    assert replica.admin_role_arn == replicator.arn
    creator = next(p for p in replica.principals() if p.name == "administrator")
    assert check(
        multi_region.policy("replica"), replica, Call(creator, "kms:PutKeyPolicy", iam=(), session=True)
    ).allowed
    # Nobody else replicates the primary, whatever IAM allows.
    for name in ("unknown", "instance", "api", "unlisted-region-exec-role", "other-qualifier-exec-role"):
        who = next(p for p in primary.principals() if p.name == name)
        decision = check(policy, primary, Call(who, "kms:ReplicateKey", iam=("*",)))
        assert decision.reason == f"explicitly denied by statement {DENY_ADMIN_SID}", name


def test_the_multi_region_policies_equal_the_shared_builder(multi_region: MultiRegion) -> None:
    for synthesized, kind in (
        (multi_region.primary, "AWS::KMS::Key"),
        (multi_region.replica, "AWS::KMS::ReplicaKey"),
    ):
        policy = only(synthesized.raw("key"), kind)["KeyPolicy"]
        vpc_id = by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
        config = synthesized.stacks.config
        assert config.region is not None
        params = key_policy_params(
            config,
            region=config.region,
            vpc_id=vpc_id,
            admin_role_arns=synthesized.stacks.key.admin_role_arns,
        )
        assert policy == build_key_policy(params)
