"""The key policy builder's document, statement by statement, and its refusals of bad input.

The matrix (``test_key_policy_matrix``) checks what the policy decides; this file pins what
it says, so a statement that changes without changing the matrix's answers (a condition
key, a Sid the CDK app and the emulator look up, the order of the denies) is still seen, and
it checks the measurement and administrator validation with its messages.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from vault.infra.key_policy import (
    AdministratorsError,
    EnclaveMeasurements,
    KeyPolicyParams,
    MeasurementsError,
    attestation_conditions,
    build_key_policy,
    decrypt_sid,
    pcr3_for_role_arn,
)

ACCOUNT = "123456789012"
INSTANCE = f"arn:aws:iam::{ACCOUNT}:role/vault/instance"
API = f"arn:aws:iam::{ACCOUNT}:role/vault/api"
FUNCTION = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:api"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/cdk-exec-eu-west-1"
OTHER_ADMIN = f"arn:aws:iam::{ACCOUNT}:role/cdk-exec-us-west-2"
A, B, C, D = ("a" * 96, "b" * 96, "c" * 96, "d" * 96)
CURRENT = EnclaveMeasurements(pcr0=A, pcr1=B, pcr2=C, pcr8=D)
FOLLOWING = EnclaveMeasurements(pcr0="1" * 96, pcr1="2" * 96, pcr2="3" * 96)
PCR3 = "e" * 96

ROOT_ACTIONS = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]
ADMIN_ONLY = [
    "kms:PutKeyPolicy",
    "kms:ReplicateKey",
    "kms:UpdatePrimaryRegion",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKeyRotation",
]
NEVER = [
    "kms:CreateGrant",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyWithoutPlaintext",
]
PERIMETER = [
    {
        "Sid": "IdentityPerimeter",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {
            "StringNotEqualsIfExists": {"aws:PrincipalAccount": ACCOUNT},
            "BoolIfExists": {"aws:PrincipalIsAWSService": "false"},
        },
    },
    {
        "Sid": "ConfusedDeputyProtection",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {
            "StringNotEqualsIfExists": {"aws:SourceAccount": ACCOUNT},
            "Null": {"aws:SourceAccount": "false"},
            "Bool": {"aws:PrincipalIsAWSService": "true"},
        },
    },
]
NETWORK = {
    "Sid": "NetworkPerimeter",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "kms:*",
    "Resource": "*",
    "Condition": {
        "StringNotEqualsIfExists": {
            "aws:SourceVpc": "vpc-1",
            "aws:PrincipalTag/dp:exclude:network": "true",
        },
        "BoolIfExists": {"aws:PrincipalIsAWSService": "false", "aws:ViaAWSService": "false"},
        "ArnNotLikeIfExists": {"aws:PrincipalArn": f"arn:aws-cn:iam::{ACCOUNT}:role/aws-service-role/*"},
    },
}
DENY_OTHER_DECRYPT = {
    "Sid": "DenyDecryptExceptByTheInstanceRole",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "kms:Decrypt",
    "Resource": "*",
    "Condition": {"ArnNotEquals": {"aws:PrincipalArn": INSTANCE}},
}
DENY_UNATTESTED = {
    "Sid": "DenyDecryptWithoutAttestation",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": "kms:Decrypt",
    "Resource": "*",
    "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}},
}
DENY_REWRAP = {
    "Sid": "DenyGrantsReEncryptionAndPlaintextDataKeys",
    "Effect": "Deny",
    "Principal": {"AWS": "*"},
    "Action": NEVER,
    "Resource": "*",
}
VAULT_CONTEXT = {"kms:EncryptionContext:vault_id": "false"}


def _deny_admin(condition: Any = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "DenyKeyAdministrationExceptByTheAdministrator",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": ADMIN_ONLY,
        "Resource": "*",
    }
    if condition is not None:
        statement["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": condition}}
    return statement


def _root(partition: str) -> dict[str, Any]:
    return {
        "Sid": "EnableIAMUserPermissions",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{ACCOUNT}:root"},
        "Action": ROOT_ACTIONS,
        "Resource": "*",
    }


def _admin(principal: Any) -> dict[str, Any]:
    return {
        "Sid": "AllowKeyAdministration",
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", *ADMIN_ONLY],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:CallerAccount": ACCOUNT}},
    }


def _encrypt(function: str | None) -> dict[str, Any]:
    equals = {"kms:CallerAccount": ACCOUNT, "kms:DataKeyPairSpec": "ECC_NIST_P384"}
    if function is not None:
        equals["lambda:SourceFunctionArn"] = function
    return {
        "Sid": "AllowEncryptByLambda",
        "Effect": "Allow",
        "Principal": {"AWS": API},
        "Action": "kms:GenerateDataKeyPairWithoutPlaintext",
        "Resource": "*",
        "Condition": {"StringEquals": equals, "Null": VAULT_CONTEXT},
    }


def _decrypt(sid: str, attestation: dict[str, str] | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"StringEquals": {"kms:CallerAccount": ACCOUNT}, "Null": VAULT_CONTEXT}
    if attestation is not None:
        condition["StringEqualsIgnoreCase"] = attestation
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": INSTANCE},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": condition,
    }


def _params(**changes: Any) -> KeyPolicyParams:
    values: dict[str, Any] = {
        "account_id": ACCOUNT,
        "instance_role_arn": INSTANCE,
        "api_role_arn": API,
        "measurements": CURRENT,
    }
    values.update(changes)
    return KeyPolicyParams(**values)


def test_the_full_document_of_a_rolling_multi_region_deployment() -> None:
    policy = build_key_policy(
        _params(
            additional_measurements=(FOLLOWING,),
            pcr3=PCR3,
            partition="aws-cn",
            api_function_arn=FUNCTION,
            admin_role_arn=ADMIN,
            additional_admin_role_arns=(OTHER_ADMIN,),
            vpc_id="vpc-1",
        )
    )
    current = {
        "kms:RecipientAttestation:ImageSha384": A,
        "kms:RecipientAttestation:PCR1": B,
        "kms:RecipientAttestation:PCR2": C,
        "kms:RecipientAttestation:PCR3": PCR3,
        "kms:RecipientAttestation:PCR8": D,
    }
    following = {
        "kms:RecipientAttestation:ImageSha384": "1" * 96,
        "kms:RecipientAttestation:PCR1": "2" * 96,
        "kms:RecipientAttestation:PCR2": "3" * 96,
        "kms:RecipientAttestation:PCR3": PCR3,
    }
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            *PERIMETER,
            NETWORK,
            DENY_OTHER_DECRYPT,
            DENY_UNATTESTED,
            DENY_REWRAP,
            _deny_admin([ADMIN, OTHER_ADMIN]),
            _root("aws-cn"),
            _admin([ADMIN, OTHER_ADMIN]),
            _encrypt(FUNCTION),
            _decrypt("AllowDecryptByEnclave", current),
            _decrypt("AllowDecryptByEnclave2", following),
        ],
    }
    # The document is plain JSON: what the CDK app and the emulator hand to KMS.
    assert json.loads(json.dumps(policy)) == policy


def test_the_smallest_document_names_one_administrator_as_a_string() -> None:
    pcr3 = hashlib.sha384(b"\x00" * 48 + INSTANCE.encode()).hexdigest()
    policy = build_key_policy(_params(measurements=FOLLOWING, admin_role_arn=ADMIN))
    assert policy["Statement"] == [
        *PERIMETER,
        DENY_OTHER_DECRYPT,
        DENY_UNATTESTED,
        DENY_REWRAP,
        _deny_admin(ADMIN),
        _root("aws"),
        _admin(ADMIN),
        _encrypt(None),
        _decrypt(
            "AllowDecryptByEnclave",
            {
                "kms:RecipientAttestation:ImageSha384": "1" * 96,
                "kms:RecipientAttestation:PCR1": "2" * 96,
                "kms:RecipientAttestation:PCR2": "3" * 96,
                "kms:RecipientAttestation:PCR3": pcr3,
            },
        ),
    ]


def test_the_unsafe_mode_drops_only_the_attestation() -> None:
    policy = build_key_policy(_params(measurements=None, allow_unattested_decrypt=True))
    assert policy["Statement"] == [
        *PERIMETER,
        DENY_OTHER_DECRYPT,
        DENY_REWRAP,
        _deny_admin(),
        _root("aws"),
        _encrypt(None),
        _decrypt("AllowDecryptByEnclave", None),
    ]
    # Measurements given win over the unsafe flag: the statement still pins them.
    pinned = build_key_policy(_params(allow_unattested_decrypt=True, pcr3=PCR3))
    decrypt = pinned["Statement"][-1]
    assert decrypt["Condition"]["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"] == A
    assert DENY_UNATTESTED not in pinned["Statement"]


def test_without_measurements_the_builder_refuses() -> None:
    with pytest.raises(MeasurementsError) as refused:
        build_key_policy(_params(measurements=None))
    assert str(refused.value) == (
        "the enclave decrypt statement needs enclave measurements "
        "(or the explicit unsafe mode allow_unattested_decrypt=True)"
    )


def test_pcr3_is_the_sha384_of_48_zero_bytes_and_the_role_arn() -> None:
    arn = "arn:aws:iam::123456789012:role/vault/é"
    assert pcr3_for_role_arn(arn) == hashlib.sha384(b"\x00" * 48 + arn.encode("utf-8")).hexdigest()


def test_decrypt_sids_number_the_images_from_two() -> None:
    assert [decrypt_sid(i) for i in range(4)] == [
        "AllowDecryptByEnclave",
        "AllowDecryptByEnclave2",
        "AllowDecryptByEnclave3",
        "AllowDecryptByEnclave4",
    ]


def test_attestation_conditions_name_pcr8_only_when_measured() -> None:
    assert attestation_conditions(FOLLOWING, PCR3) == {
        "kms:RecipientAttestation:ImageSha384": "1" * 96,
        "kms:RecipientAttestation:PCR1": "2" * 96,
        "kms:RecipientAttestation:PCR2": "3" * 96,
        "kms:RecipientAttestation:PCR3": PCR3,
    }
    assert attestation_conditions(CURRENT, PCR3)["kms:RecipientAttestation:PCR8"] == D


def test_measurements_are_96_hex_characters_kept_lowercase() -> None:
    upper = EnclaveMeasurements(pcr0="A" * 96, pcr1="B" * 96, pcr2="C" * 96, pcr8="D" * 96)
    assert (upper.pcr0, upper.pcr1, upper.pcr2, upper.pcr8) == (A, B, C, D)
    assert EnclaveMeasurements(pcr0=A, pcr1=B, pcr2=C).pcr8 is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (name, value)
        for name in ("pcr0", "pcr1", "pcr2", "pcr8")
        for value in ("a" * 95, "a" * 97, "g" * 96, "a" * 95 + "\n", "a" * 96 + "\n", 96, None)
        # PCR8 is optional: None is its absence.
        if not (name == "pcr8" and value is None)
    ],
)
def test_each_malformed_measurement_is_named(name: str, value: Any) -> None:
    # 96 digits and a newline too: "$" alone would let it through, and a debug-mode zero PCR
    # with a newline would pass the zero check.
    values = {"pcr0": A, "pcr1": B, "pcr2": C, "pcr8": D, name: value}
    with pytest.raises(MeasurementsError) as refused:
        EnclaveMeasurements(**values)
    assert str(refused.value) == f"{name.upper()} must be 96 hex characters"


def test_nitro_cli_output_round_trips_and_its_inner_map_is_accepted() -> None:
    document = CURRENT.to_nitro_cli()
    assert document == {
        "Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": A, "PCR1": B, "PCR2": C, "PCR8": D}
    }
    assert EnclaveMeasurements.from_nitro_cli(document) == CURRENT
    assert EnclaveMeasurements.from_nitro_cli(document["Measurements"]) == CURRENT
    assert FOLLOWING.to_nitro_cli() == {
        "Measurements": {
            "HashAlgorithm": "Sha384 { ... }",
            "PCR0": "1" * 96,
            "PCR1": "2" * 96,
            "PCR2": "3" * 96,
        }
    }
    assert EnclaveMeasurements.from_nitro_cli(FOLLOWING.to_nitro_cli()) == FOLLOWING


@pytest.mark.parametrize(
    ("document", "text"),
    [
        ({"Measurements": [A]}, "Measurements must be an object"),
        ({"Measurements": {"PCR1": B, "PCR2": C}}, "measurements lack PCR0"),
        ({"PCR0": A, "PCR2": C}, "measurements lack PCR1"),
        ({"PCR0": A, "PCR1": B}, "measurements lack PCR2"),
        ({"PCR0": A, "PCR1": B, "PCR2": "x"}, "PCR2 must be 96 hex characters"),
    ],
)
def test_malformed_nitro_cli_output_is_refused_by_name(document: dict[str, Any], text: str) -> None:
    with pytest.raises(MeasurementsError) as refused:
        EnclaveMeasurements.from_nitro_cli(document)
    assert str(refused.value) == text


def test_measurements_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(CURRENT.to_nitro_cli()), encoding="utf-8")
    assert EnclaveMeasurements.from_file(path) == EnclaveMeasurements.from_file(str(path)) == CURRENT
    missing = tmp_path / "absent.json"
    with pytest.raises(MeasurementsError) as absent:
        EnclaveMeasurements.from_file(missing)
    assert str(absent.value).startswith(f"cannot read measurements from {missing}: ")
    assert isinstance(absent.value.__cause__, FileNotFoundError)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(MeasurementsError) as broken:
        EnclaveMeasurements.from_file(path)
    assert str(broken.value).startswith(f"cannot read measurements from {path}: Expecting property name")
    assert isinstance(broken.value.__cause__, json.JSONDecodeError)


def test_administrators_are_listed_first_once_and_exactly() -> None:
    assert _params().admin_role_arns() == ()
    assert _params(admin_role_arn=ADMIN).admin_role_arns() == (ADMIN,)
    both = _params(admin_role_arn=ADMIN, additional_admin_role_arns=(OTHER_ADMIN,))
    assert both.admin_role_arns() == (ADMIN, OTHER_ADMIN)
    cases = [
        (
            _params(additional_admin_role_arns=(OTHER_ADMIN,)),
            "additional administrators need the first administrator",
        ),
        (
            _params(admin_role_arn=ADMIN, additional_admin_role_arns=(ADMIN,)),
            "the same administrator is listed twice",
        ),
        (
            _params(admin_role_arn=f"arn:aws:iam::{ACCOUNT}:role/cdk-*"),
            f"an administrator must be one exact role ARN, not 'arn:aws:iam::{ACCOUNT}:role/cdk-*'",
        ),
        (
            _params(admin_role_arn=ADMIN, additional_admin_role_arns=(f"arn:aws:iam::{ACCOUNT}:role/cdk-?",)),
            f"an administrator must be one exact role ARN, not 'arn:aws:iam::{ACCOUNT}:role/cdk-?'",
        ),
    ]
    for params, text in cases:
        with pytest.raises(AdministratorsError) as refused:
            params.admin_role_arns()
        assert str(refused.value) == text
        with pytest.raises(AdministratorsError):
            build_key_policy(params)


def test_measurement_sets_are_the_current_image_first_and_never_debug_zeros() -> None:
    assert _params().measurement_sets() == (CURRENT,)
    assert _params(additional_measurements=(FOLLOWING,)).measurement_sets() == (CURRENT, FOLLOWING)
    assert _params(measurements=None).measurement_sets() == ()
    zero = "0" * 96
    cases = [
        (
            _params(measurements=None, additional_measurements=(FOLLOWING,)),
            "additional measurements need the current image's measurements",
        ),
        (_params(additional_measurements=(CURRENT,)), "the same enclave measurements are listed twice"),
    ]
    for field in ("pcr0", "pcr1", "pcr2"):
        values = {"pcr0": A, "pcr1": B, "pcr2": C, field: zero}
        message = "PCR0, PCR1 and PCR2 must not be zero (a debug-mode enclave's values)"
        cases.append((_params(measurements=EnclaveMeasurements(**values)), message))
        cases.append((_params(additional_measurements=(EnclaveMeasurements(**values),)), message))
    for params, text in cases:
        with pytest.raises(MeasurementsError) as refused:
            params.measurement_sets()
        assert str(refused.value) == text
    # PCR8 is not zeroed alone by debug mode: a zero PCR8 is a value like another.
    assert _params(measurements=EnclaveMeasurements(pcr0=A, pcr1=B, pcr2=C, pcr8=zero)).measurement_sets()
