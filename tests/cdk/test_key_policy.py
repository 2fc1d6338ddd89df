"""The key stack: the decrypt statement is bound to the enclave's measurements (decision D13).

The bridge to the emulator: the synthesized policy is exactly what ``build_key_policy``
returns for the same measurements and role ARNs, and the emulator's KMS front enforces
that same builder's output. The synthesized policy also answers every principal x every
KMS action x every kind of attestation as the table in
``tests/support/key_policy_matrix.py`` says (decision D17).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from vault_cdk.key_stack import key_policy_params
from vault_cdk.naming import Names

from tests.support.key_policy_matrix import Deployment, Network, check, matrix
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
    admin = by_sid(policy, ADMIN_SID)
    assert admin["Principal"] == {"AWS": execution_role}
    assert "kms:PutKeyPolicy" in admin["Action"]
    guard = by_sid(policy, DENY_ADMIN_SID)
    assert guard["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": execution_role}}
    assert "kms:PutKeyPolicy" in guard["Action"] and "kms:ReplicateKey" in guard["Action"]


def deployment_of(synthesized: Synthesized, vpc_id: str) -> Deployment:
    config = synthesized.stacks.config
    names = Names(config)
    return Deployment(
        account=config.account,
        region=REGION,
        instance_role_arn=names.instance_role_arn,
        api_role_arn=names.api_role_arn,
        api_function_arn=f"arn:aws:lambda:{REGION}:{config.account}:function:{names.api_function_name}",
        admin_role_arn=synthesized.stacks.key.admin_role_arn,
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
    assert outside == {"administrator", "network-excluded"}


def test_perimeter_denies_come_first(policy: dict[str, Any]) -> None:
    sids = [s["Sid"] for s in statements(policy)]
    assert sids[:3] == ["IdentityPerimeter", "ConfusedDeputyProtection", "NetworkPerimeter"]
    assert all(s["Effect"] == "Deny" for s in list(statements(policy))[:3])


def test_synthesized_policy_equals_the_shared_builder(vault: Synthesized, policy: dict[str, Any]) -> None:
    # The VPC id is a cross-stack import; the builder places it verbatim, so hand it back.
    vpc_id = by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
    params = key_policy_params(
        vault.stacks.config, region=REGION, vpc_id=vpc_id, admin_role_arn=vault.stacks.key.admin_role_arn
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
        admin_role_arn=synthesized.stacks.key.admin_role_arn,
    )
    assert params.additional_measurements == (EnclaveMeasurements.from_file(following),)
    assert policy == build_key_policy(params)
