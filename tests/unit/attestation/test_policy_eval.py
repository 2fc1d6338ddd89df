"""Key policy evaluation: IAM semantics of the operators our policy uses, and failing closed."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.aws.kms.policy import Decision, PolicyError, RequestContext, conditions_hold, evaluate, validate
from vault.infra.key_policy import (
    ADMIN_SID,
    DECRYPT_SID,
    DENY_ADMIN_SID,
    DENY_OTHER_DECRYPT_SID,
    DENY_UNATTESTED_SID,
    AdministratorsError,
    EnclaveMeasurements,
    KeyPolicyParams,
    MeasurementsError,
    build_key_policy,
)

from .conftest import ACCOUNT, API_ROLE, INSTANCE_ROLE, MEASUREMENTS, PCR3, key_policy

KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def context(principal: str, action: str, **keys: Any) -> RequestContext:
    account = principal.split(":")[4]
    base: dict[str, list[str]] = {
        "aws:PrincipalArn": [principal],
        "aws:PrincipalAccount": [account],
        "aws:PrincipalIsAWSService": ["false"],
        "kms:CallerAccount": [account],
    }
    base.update({k: v if isinstance(v, list) else [v] for k, v in keys.items()})
    return RequestContext(principal_arn=principal, action=action, resource=KEY, keys=base)


ATTESTED = {
    "kms:EncryptionContext:vault_id": "v_1",
    "kms:RecipientAttestation:ImageSha384": MEASUREMENTS.pcr0,
    "kms:RecipientAttestation:PCR1": MEASUREMENTS.pcr1,
    "kms:RecipientAttestation:PCR2": MEASUREMENTS.pcr2,
    "kms:RecipientAttestation:PCR3": PCR3,
    "kms:RecipientAttestation:PCR8": MEASUREMENTS.pcr8,
}


def holds(condition: dict[str, Any], **keys: Any) -> bool:
    request = context(INSTANCE_ROLE, "kms:Decrypt", **keys)
    return conditions_hold(condition, request)


# -- the vault key policy ---------------------------------------------------------------------


def test_attested_decrypt_by_the_instance_role_is_allowed() -> None:
    decision = evaluate(key_policy(), context(INSTANCE_ROLE, "kms:Decrypt", **ATTESTED))
    assert decision.allowed and "AllowDecryptByEnclave" in decision.reason


def test_pcr_values_compare_case_insensitively() -> None:
    upper = {k: v.upper() if "Attestation" in k else v for k, v in ATTESTED.items()}
    assert evaluate(key_policy(), context(INSTANCE_ROLE, "kms:Decrypt", **upper)).allowed


@pytest.mark.parametrize("missing", sorted(k for k in ATTESTED))
def test_every_pinned_value_is_required(missing: str) -> None:
    keys = {k: v for k, v in ATTESTED.items() if k != missing}
    assert not evaluate(key_policy(), context(INSTANCE_ROLE, "kms:Decrypt", **keys)).allowed


def test_unattested_and_debug_mode_decrypts_are_refused() -> None:
    policy = key_policy()
    assert not evaluate(
        policy, context(INSTANCE_ROLE, "kms:Decrypt", **{"kms:EncryptionContext:vault_id": "v"})
    ).allowed
    zeros = {k: ("00" * 48 if "Attestation" in k else v) for k, v in ATTESTED.items()}
    assert not evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **zeros)).allowed
    # Debug mode as hardware has it: the image PCRs (0, 1, 2) and PCR8 zero, PCR3 still the role's.
    zeroed = ("ImageSha384", "PCR1", "PCR2", "PCR8")
    debug = {**ATTESTED, **{f"kms:RecipientAttestation:{name}": "00" * 48 for name in zeroed}}
    assert debug["kms:RecipientAttestation:PCR3"] == PCR3
    assert not evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **debug)).allowed


def with_iam(principal: str, action: str, iam: tuple[str, ...] = ("*",), **keys: Any) -> RequestContext:
    """A request by a principal whose IAM policies allow ``iam`` (worst case: everything)."""
    base = context(principal, action, **keys)
    return RequestContext(principal, action, KEY, base.keys, iam_allowed_actions=iam)


def test_the_root_statement_never_grants_decrypt() -> None:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    policy = key_policy()
    assert not evaluate(policy, context(root, "kms:Decrypt", **ATTESTED)).allowed
    assert evaluate(policy, context(root, "kms:DescribeKey")).allowed
    # Roles of the account get the root statement only as far as their IAM policies allow.
    role = f"arn:aws:iam::{ACCOUNT}:role/admin"
    assert not evaluate(policy, context(role, "kms:DescribeKey")).allowed
    assert evaluate(policy, with_iam(role, "kms:DescribeKey", ("kms:*",))).allowed
    assert not evaluate(policy, with_iam(role, "kms:Decrypt", ("kms:*",))).allowed


OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/administrator-of-everything"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-us-east-1"


@pytest.mark.parametrize(
    "action",
    [
        "kms:CreateGrant",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyPair",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:Encrypt",
        "kms:PutKeyPolicy",
        "kms:ReplicateKey",
        "kms:ScheduleKeyDeletion",
    ],
)
def test_iam_cannot_open_a_path_around_attestation(action: str) -> None:
    # The attack: an IAM administrator grants itself Decrypt, re-wraps a vault's
    # encrypted private key under its own key, or rewrites or copies the policy.
    policy = key_policy(admin_role_arn=ADMIN_ROLE)
    for principal in (OTHER_ROLE, INSTANCE_ROLE, API_ROLE, f"arn:aws:iam::{ACCOUNT}:root"):
        decision = evaluate(policy, with_iam(principal, action, **ATTESTED))
        assert not decision.allowed, (principal, decision.reason)
        assert decision.reason.startswith("explicitly denied by statement Deny"), decision.reason


def test_only_the_administrator_changes_the_policy() -> None:
    policy = key_policy(admin_role_arn=ADMIN_ROLE)
    # The administrator needs no IAM permission: the key policy names it (lockout check).
    for action in ("kms:PutKeyPolicy", "kms:ReplicateKey", "kms:GetKeyPolicy", "kms:ScheduleKeyDeletion"):
        decision = evaluate(policy, context(ADMIN_ROLE, action))
        assert decision.allowed and ADMIN_SID in decision.reason, (action, decision.reason)
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{ADMIN_ROLE.rsplit('/', 1)[1]}/AWSCloudFormation"
    assert evaluate(policy, context(session, "kms:PutKeyPolicy")).allowed
    # ... but even it gets no key material, no grant and no re-wrapped copy.
    for action in ("kms:Decrypt", "kms:CreateGrant", "kms:ReEncryptFrom", "kms:GenerateDataKey"):
        assert not evaluate(policy, with_iam(ADMIN_ROLE, action, **ATTESTED)).allowed, action
    # Without an administrator, nobody changes the policy.
    unadministered = key_policy()
    assert not evaluate(unadministered, with_iam(ADMIN_ROLE, "kms:PutKeyPolicy")).allowed
    assert not evaluate(unadministered, context(f"arn:aws:iam::{ACCOUNT}:root", "kms:PutKeyPolicy")).allowed


REPLICA_ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-eu-central-1"


def test_the_execution_role_of_every_key_region_administers_and_no_other() -> None:
    # A multi-region key: the replica region's execution role calls ReplicateKey on the
    # primary, so the primary's policy names both regions' roles, exactly.
    policy = key_policy(admin_role_arn=ADMIN_ROLE, additional_admin_role_arns=(REPLICA_ADMIN_ROLE,))
    allow = next(s for s in policy["Statement"] if s["Sid"] == ADMIN_SID)
    deny = next(s for s in policy["Statement"] if s["Sid"] == DENY_ADMIN_SID)
    assert allow["Principal"] == {"AWS": [ADMIN_ROLE, REPLICA_ADMIN_ROLE]}
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [ADMIN_ROLE, REPLICA_ADMIN_ROLE]}}
    for role in (ADMIN_ROLE, REPLICA_ADMIN_ROLE):
        session = f"arn:aws:sts::{ACCOUNT}:assumed-role/{role.rsplit('/', 1)[1]}/AWSCloudFormation"
        for action in ("kms:ReplicateKey", "kms:UpdatePrimaryRegion", "kms:PutKeyPolicy"):
            decision = evaluate(policy, context(session, action))
            assert decision.allowed and ADMIN_SID in decision.reason, (role, action, decision.reason)
    # Another region's execution role, another qualifier's, the vault's roles: refused by the
    # deny, whatever their IAM policies allow.
    for stranger in (
        ADMIN_ROLE.replace("us-east-1", "ap-south-1"),
        ADMIN_ROLE.replace("hnb659fds", "otherapp1"),
        INSTANCE_ROLE,
        API_ROLE,
        OTHER_ROLE,
    ):
        decision = evaluate(policy, with_iam(stranger, "kms:ReplicateKey"))
        assert decision.reason == f"explicitly denied by statement {DENY_ADMIN_SID}", stranger


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"additional_admin_role_arns": (REPLICA_ADMIN_ROLE,)}, "first administrator"),
        ({"admin_role_arn": ADMIN_ROLE, "additional_admin_role_arns": (ADMIN_ROLE,)}, "listed twice"),
        ({"admin_role_arn": f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-*"}, "exact role ARN"),
        (
            {"admin_role_arn": ADMIN_ROLE, "additional_admin_role_arns": (f"arn:aws:iam::{ACCOUNT}:role/*",)},
            "exact role ARN",
        ),
    ],
)
def test_inconsistent_administrators_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(AdministratorsError, match=message):
        key_policy(**options)


def test_decrypt_needs_a_recipient_and_the_instance_role() -> None:
    policy = key_policy()
    plain = {"kms:EncryptionContext:vault_id": "v_1"}
    decision = evaluate(policy, with_iam(INSTANCE_ROLE, "kms:Decrypt", **plain))
    assert decision.reason == f"explicitly denied by statement {DENY_UNATTESTED_SID}"
    # Another role with the enclave's very document (a replayed Recipient) is refused too.
    decision = evaluate(policy, with_iam(OTHER_ROLE, "kms:Decrypt", **ATTESTED))
    assert decision.reason == f"explicitly denied by statement {DENY_OTHER_DECRYPT_SID}"


def test_unsafe_mode_keeps_every_other_guard() -> None:
    policy = key_policy(None, allow_unattested_decrypt=True)
    sids = [s["Sid"] for s in policy["Statement"]]
    assert DENY_UNATTESTED_SID not in sids
    plain = {"kms:EncryptionContext:vault_id": "v_1"}
    assert evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **plain)).allowed
    assert not evaluate(policy, with_iam(OTHER_ROLE, "kms:Decrypt", **plain)).allowed
    assert not evaluate(policy, with_iam(INSTANCE_ROLE, "kms:CreateGrant", **plain)).allowed


def test_principal_keys_come_from_the_caller_when_absent() -> None:
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "kms:DescribeKey",
        "Resource": "*",
        "Condition": {
            "ArnEquals": {"aws:PrincipalArn": INSTANCE_ROLE},
            "StringEquals": {"aws:PrincipalAccount": ACCOUNT},
        },
    }
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/nitro-vault-instance/i-0123456789abcdef0"
    for principal in (INSTANCE_ROLE, session):
        request = RequestContext(principal, "kms:DescribeKey", KEY)
        assert evaluate({"Statement": [statement]}, request).allowed, principal
        # A session ARN given as aws:PrincipalArn is the role's, as in AWS.
        given = RequestContext(principal, "kms:DescribeKey", KEY, {"aws:PrincipalArn": [session]})
        assert evaluate({"Statement": [statement]}, given).allowed, principal
    assert not evaluate({"Statement": [statement]}, RequestContext(API_ROLE, "kms:DescribeKey", KEY)).allowed
    # Given keys are not overridden.
    lying = RequestContext(INSTANCE_ROLE, "kms:DescribeKey", KEY, {"aws:PrincipalAccount": ["999999999999"]})
    assert not evaluate({"Statement": [statement]}, lying).allowed


def test_key_pair_generation_by_the_api_role() -> None:
    policy = key_policy()
    action = "kms:GenerateDataKeyPairWithoutPlaintext"
    good = {"kms:EncryptionContext:vault_id": "v_1", "kms:DataKeyPairSpec": "ECC_NIST_P384"}
    assert evaluate(policy, context(API_ROLE, action, **good)).allowed
    assert not evaluate(
        policy, context(API_ROLE, action, **{**good, "kms:DataKeyPairSpec": "RSA_2048"})
    ).allowed
    assert not evaluate(policy, context(API_ROLE, action, **{"kms:DataKeyPairSpec": "ECC_NIST_P384"})).allowed
    assert not evaluate(policy, context(INSTANCE_ROLE, action, **good)).allowed
    assert not evaluate(policy, context(API_ROLE, "kms:Decrypt", **ATTESTED)).allowed


def test_identity_perimeter_denies_other_accounts() -> None:
    stranger = "arn:aws:iam::999999999999:role/nitro-vault-instance"
    assert not evaluate(key_policy(), context(stranger, "kms:Decrypt", **ATTESTED)).allowed


def test_network_perimeter_when_a_vpc_is_set() -> None:
    policy = build_key_policy(
        KeyPolicyParams(
            account_id=ACCOUNT,
            instance_role_arn=INSTANCE_ROLE,
            api_role_arn=API_ROLE,
            measurements=MEASUREMENTS,
            vpc_id="vpc-1",
        )
    )
    assert not evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **ATTESTED)).allowed  # no aws:SourceVpc
    in_vpc = context(INSTANCE_ROLE, "kms:Decrypt", **ATTESTED, **{"aws:SourceVpc": "vpc-1"})
    assert evaluate(policy, in_vpc).allowed
    other_vpc = context(INSTANCE_ROLE, "kms:Decrypt", **ATTESTED, **{"aws:SourceVpc": "vpc-2"})
    assert decision_reason(policy, other_vpc).startswith("explicitly denied by statement NetworkPerimeter")
    excluded = context(
        INSTANCE_ROLE,
        "kms:Decrypt",
        **ATTESTED,
        **{"aws:SourceVpc": "vpc-2", "aws:PrincipalTag/dp:exclude:network": "true"},
    )
    assert evaluate(policy, excluded).allowed
    service_linked = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/kms.amazonaws.com/AWSServiceRoleForKMS"
    assert "NetworkPerimeter" not in decision_reason(policy, context(service_linked, "kms:DescribeKey"))


def decision_reason(policy: dict[str, Any], request: RequestContext) -> str:
    return evaluate(policy, request).reason


def test_assumed_role_sessions_match_their_role() -> None:
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/nitro-vault-instance/i-0123456789abcdef0"
    request = context(session, "kms:Decrypt", **ATTESTED)
    assert evaluate(key_policy(), request).allowed


# -- operator semantics -----------------------------------------------------------------------


def test_string_operators() -> None:
    assert holds({"StringEquals": {"k": ["a", "b"]}}, k="b")
    assert not holds({"StringEquals": {"k": "A"}}, k="a")
    assert holds({"StringEqualsIgnoreCase": {"k": "A"}}, k="a")
    assert not holds({"StringEquals": {"k": "a"}})  # absent
    assert holds({"StringNotEquals": {"k": ["a", "b"]}}, k="c")
    assert not holds({"StringNotEquals": {"k": ["a", "b"]}}, k="b")  # negation means "none of them"
    assert holds({"StringNotEquals": {"k": "a"}})  # negated operators hold for absent keys
    assert holds({"StringLike": {"k": "a*c?"}}, k="abbbcd")
    assert not holds({"StringLike": {"k": "a[b]"}}, k="ab")  # brackets are literal
    assert holds({"StringNotLike": {"k": "x*"}}, k="abc")
    assert holds({"StringNotEqualsIgnoreCase": {"k": "A"}}, k="b")


def test_if_exists_null_and_bool() -> None:
    assert holds({"StringEqualsIfExists": {"k": "a"}})
    assert not holds({"StringEqualsIfExists": {"k": "a"}}, k="b")
    assert holds({"StringNotEqualsIfExists": {"k": "a"}}, k="b")
    assert holds({"Null": {"k": "true"}})
    assert not holds({"Null": {"k": "true"}}, k="x")
    assert holds({"Null": {"k": "false"}}, k="x")
    assert holds({"Bool": {"k": "true"}}, k="True")
    assert holds({"Bool": {"k": True}}, k="true")
    assert not holds({"Bool": {"k": "true"}})
    assert holds({"BoolIfExists": {"k": "false"}})


def test_arn_operators() -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/kms.amazonaws.com/x"
    assert holds({"ArnLike": {"k": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/*"}}, k=arn)
    assert not holds({"ArnLike": {"k": "arn:aws:iam::*:user/*"}}, k=arn)
    assert holds({"ArnNotLikeIfExists": {"k": "arn:aws:iam::*:user/*"}}, k=arn)
    assert holds({"ArnNotLikeIfExists": {"k": "arn:*"}})
    assert not holds({"ArnEquals": {"k": "arn:aws:iam"}}, k=arn)  # not six components


def test_multi_valued_keys_need_a_set_operator() -> None:
    keys = {"kms:EncryptionContextKeys": ["vault_id", "tenant"]}
    assert holds({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "tenant"}}, **keys)
    assert not holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "vault_id"}}, **keys)
    assert holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["vault_id", "tenant"]}}, **keys)
    assert holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": "x"}})  # vacuously true
    assert not holds({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "x"}})
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContextKeys": "vault_id"}},
    }
    decision = evaluate({"Statement": [statement]}, context(INSTANCE_ROLE, "kms:Decrypt", **keys))
    assert not decision.allowed and "multi-valued" in decision.reason


def test_condition_keys_are_case_insensitive() -> None:
    assert holds({"StringEquals": {"KMS:callerACCOUNT": ACCOUNT}})


@pytest.mark.parametrize(
    "statement",
    [
        {"Condition": {"NumericLessThan": {"k": "1"}}},
        {"Condition": {"StringEqualsAnyCase": {"k": "1"}}},
        {"Condition": {"ForSomeValues:StringEquals": {"k": "1"}}},
        {"Condition": {"NullIfExists": {"k": "true"}}},
        {"Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}},
        {"Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {
            "Condition": {
                "StringEquals": {"aws:PrincipalArn": {"Fn::Sub": "arn:${AWS::Partition}:iam::1:root"}}
            }
        },
        {"Principal": {"AWS": {"Fn::GetAtt": ["Role", "Arn"]}}},
        {"NotPrincipal": {"AWS": INSTANCE_ROLE}, "Effect": "Deny"},
        {"Condition": {"StringEquals": {"aws:PrincipalArn": "${aws:username}"}}},
        {"NotPrincipal": {"AWS": INSTANCE_ROLE}},
        {"Effect": "Maybe"},
        {"Action": None},
    ],
)
def test_unsupported_constructs_deny_even_on_an_unrelated_statement(statement: dict[str, Any]) -> None:
    allow = {"Effect": "Allow", "Principal": {"AWS": INSTANCE_ROLE}, "Action": "kms:*", "Resource": "*"}
    odd = {
        "Effect": "Allow",
        "Principal": {"AWS": API_ROLE},
        "Action": "kms:Encrypt",
        "Resource": "*",
        **statement,
    }
    decision = evaluate({"Statement": [allow, odd]}, context(INSTANCE_ROLE, "kms:Decrypt"))
    assert not decision.allowed and "cannot be evaluated" in decision.reason
    assert evaluate({"Statement": [allow]}, context(INSTANCE_ROLE, "kms:Decrypt")).allowed
    with pytest.raises(PolicyError):
        validate({"Statement": [allow, odd]})
    validate({"Statement": [allow]})


def test_the_vault_policies_are_fully_evaluable() -> None:
    validate(key_policy())
    validate(key_policy(admin_role_arn=ADMIN_ROLE, vpc_id="vpc-1"))
    validate(key_policy(None, allow_unattested_decrypt=True))


def test_unknown_operators_name_themselves() -> None:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringEqualsSomehow": {"kms:GrantOperations": "Decrypt"}},
    }
    decision = evaluate({"Statement": [statement]}, context(INSTANCE_ROLE, "kms:CreateGrant"))
    assert decision == Decision(
        False, "the key policy cannot be evaluated: unsupported condition operator 'StringEqualsSomehow'"
    )


def test_explicit_deny_wins_and_not_action() -> None:
    allow = {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}
    deny = {"Effect": "Deny", "Principal": "*", "NotAction": ["kms:Describe*", "kms:List*"], "Resource": "*"}
    policy = {"Statement": [allow, deny]}
    assert not evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt")).allowed
    assert evaluate(policy, context(INSTANCE_ROLE, "kms:DescribeKey")).allowed
    assert evaluate(policy, context(INSTANCE_ROLE, "KMS:listkeys")).allowed  # actions ignore case
    only_other_key = {**allow, "Resource": KEY.replace("1234abcd", "ffffffff")}
    assert not evaluate({"Statement": only_other_key}, context(INSTANCE_ROLE, "kms:Decrypt")).allowed


# -- several images during a rolling upgrade ----------------------------------------------------

IMAGE_A = MEASUREMENTS
IMAGE_B = EnclaveMeasurements(pcr0="0b" * 48, pcr1="1b" * 48, pcr2="2b" * 48, pcr8="8b" * 48)


def attested_as(*, pcr0: str, pcr1: str, pcr2: str, pcr8: str | None) -> dict[str, str]:
    keys = {
        "kms:EncryptionContext:vault_id": "v_1",
        "kms:RecipientAttestation:ImageSha384": pcr0,
        "kms:RecipientAttestation:PCR1": pcr1,
        "kms:RecipientAttestation:PCR2": pcr2,
        "kms:RecipientAttestation:PCR3": PCR3,
    }
    if pcr8 is not None:
        keys["kms:RecipientAttestation:PCR8"] = pcr8
    return keys


def image_keys(image: EnclaveMeasurements) -> dict[str, str]:
    return attested_as(pcr0=image.pcr0, pcr1=image.pcr1, pcr2=image.pcr2, pcr8=image.pcr8)


def test_one_complete_statement_per_image() -> None:
    policy = key_policy(IMAGE_A, IMAGE_B)
    decrypting = [
        s for s in policy["Statement"] if s.get("Action") == "kms:Decrypt" and s["Effect"] == "Allow"
    ]
    assert [s["Sid"] for s in decrypting] == [DECRYPT_SID, f"{DECRYPT_SID}2"]
    for statement, image in zip(decrypting, (IMAGE_A, IMAGE_B), strict=True):
        pinned = statement["Condition"]["StringEqualsIgnoreCase"]
        assert all(isinstance(value, str) for value in pinned.values()), "one value per PCR"
        assert pinned["kms:RecipientAttestation:ImageSha384"] == image.pcr0
        assert pinned["kms:RecipientAttestation:PCR2"] == image.pcr2
    # Everything but the Sid and the PCRs is the single-image statement.
    single = next(s for s in key_policy(IMAGE_A)["Statement"] if s["Sid"] == DECRYPT_SID)
    assert decrypting[0] == single


@pytest.mark.parametrize(("image", "sid"), [(IMAGE_A, DECRYPT_SID), (IMAGE_B, f"{DECRYPT_SID}2")])
def test_a_document_of_either_image_decrypts(image: EnclaveMeasurements, sid: str) -> None:
    decision = evaluate(
        key_policy(IMAGE_A, IMAGE_B), context(INSTANCE_ROLE, "kms:Decrypt", **image_keys(image))
    )
    assert decision.allowed
    assert decision.reason == f"allowed by statement {sid}"


@pytest.mark.parametrize(
    "mixed",
    [
        {"pcr0": IMAGE_A.pcr0, "pcr1": IMAGE_A.pcr1, "pcr2": IMAGE_B.pcr2, "pcr8": IMAGE_A.pcr8},
        {"pcr0": IMAGE_B.pcr0, "pcr1": IMAGE_B.pcr1, "pcr2": IMAGE_A.pcr2, "pcr8": IMAGE_B.pcr8},
        {"pcr0": IMAGE_A.pcr0, "pcr1": IMAGE_B.pcr1, "pcr2": IMAGE_A.pcr2, "pcr8": IMAGE_A.pcr8},
        {"pcr0": IMAGE_B.pcr0, "pcr1": IMAGE_B.pcr1, "pcr2": IMAGE_B.pcr2, "pcr8": IMAGE_A.pcr8},
    ],
    ids=["pcr0-of-A-pcr2-of-B", "pcr0-of-B-pcr2-of-A", "pcr1-of-B", "pcr8-of-A"],
)
def test_a_document_mixing_the_images_is_refused(mixed: dict[str, str]) -> None:
    request = context(INSTANCE_ROLE, "kms:Decrypt", **attested_as(**mixed))
    decision = evaluate(key_policy(IMAGE_A, IMAGE_B), request)
    assert not decision.allowed
    assert decision.reason == "no statement allows the action"


def test_an_image_dropped_from_the_policy_no_longer_decrypts() -> None:
    # The last step of an upgrade: the key names only the new image again.
    policy = key_policy(IMAGE_B)
    assert not evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **image_keys(IMAGE_A))).allowed
    assert evaluate(policy, context(INSTANCE_ROLE, "kms:Decrypt", **image_keys(IMAGE_B))).allowed


@pytest.mark.parametrize("zeroed", ["pcr0", "pcr1", "pcr2"])
def test_a_debug_mode_image_is_never_pinned(zeroed: str) -> None:
    debug = EnclaveMeasurements(**{**vars(IMAGE_B), zeroed: "00" * 48})
    with pytest.raises(MeasurementsError, match="debug-mode"):
        key_policy(debug)
    with pytest.raises(MeasurementsError, match="debug-mode"):
        key_policy(IMAGE_A, debug)


def test_inconsistent_image_lists_are_refused() -> None:
    with pytest.raises(MeasurementsError, match="listed twice"):
        key_policy(IMAGE_A, IMAGE_B, IMAGE_A)
    with pytest.raises(MeasurementsError, match="current image"):
        key_policy(None, IMAGE_B, allow_unattested_decrypt=True)
