"""The key stack: the decrypt statement is bound to the enclave's measurements (decision D13).

The last test is the bridge to the emulator: the synthesized policy is exactly what
``build_key_policy`` returns for the same measurements and role ARNs, and the emulator's
KMS front enforces that same builder's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vault_cdk.key_stack import key_policy_params
from vault_cdk.naming import Names

from vault.infra.key_policy import (
    DECRYPT_SID,
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


def test_no_statement_lets_iam_grant_decrypt(policy: dict[str, Any]) -> None:
    root = by_sid(policy, ROOT_SID)
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert root["NotAction"] == "kms:Decrypt"
    assert "Action" not in root
    decrypting = [
        s
        for s in statements(policy)
        if s["Effect"] == "Allow"
        and any(a in ("kms:Decrypt", "kms:*", "*") for a in as_list(s.get("Action", [])))
    ]
    assert [s["Sid"] for s in decrypting] == [DECRYPT_SID]
    # Every allow that could include Decrypt through NotAction excludes it explicitly.
    for statement in statements(policy):
        if statement["Effect"] == "Allow" and "NotAction" in statement:
            assert "kms:Decrypt" in as_list(statement["NotAction"])


def test_perimeter_denies_come_first(policy: dict[str, Any]) -> None:
    sids = [s["Sid"] for s in statements(policy)]
    assert sids[:3] == ["IdentityPerimeter", "ConfusedDeputyProtection", "NetworkPerimeter"]
    assert all(s["Effect"] == "Deny" for s in list(statements(policy))[:3])


def test_synthesized_policy_equals_the_shared_builder(vault: Synthesized, policy: dict[str, Any]) -> None:
    # The VPC id is a cross-stack import; the builder places it verbatim, so hand it back.
    vpc_id = by_sid(policy, "NetworkPerimeter")["Condition"]["StringNotEqualsIfExists"]["aws:SourceVpc"]
    params = key_policy_params(vault.stacks.config, region=REGION, vpc_id=vpc_id)
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
    decrypting = [s for s in statements(policy) if s.get("Action") == "kms:Decrypt"]
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
    params = key_policy_params(synthesized.stacks.config, region=REGION, vpc_id=vpc_id)
    assert params.additional_measurements == (EnclaveMeasurements.from_file(following),)
    assert policy == build_key_policy(params)
