"""Who may do what with the vault key: an explicit table, and requests to check it with.

The table (:func:`expected`) is written out here, not derived from
:mod:`vault.infra.key_policy`, so that a change to the builder that widens access fails
the matrix instead of moving the expectation with it. Requests carry the condition keys
KMS sets for each operation: attestation keys only for operations that take a
``Recipient`` and encryption-context keys only for those that take an encryption
context, both read from botocore's KMS service model.

Used by the property test on ``build_key_policy`` (with the arguments the CDK app
passes) and by the CDK test on the synthesized policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cache

import botocore.session

from emulator.aws.kms.policy import Decision, RequestContext, evaluate
from vault.infra.key_policy import EnclaveMeasurements

NETWORK_TAG = "aws:PrincipalTag/dp:exclude:network"
KEY_ID = "mrk-00000000000000000000000000000000"
#: What the account's IAM policies may allow on the key and the key policy lets through.
IAM_MANAGEMENT = frozenset(
    {
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
    }
)
#: Only the key administrators, whatever IAM says.
ADMINISTRATOR_ONLY = frozenset(
    {
        "kms:PutKeyPolicy",
        "kms:ReplicateKey",
        "kms:UpdatePrimaryRegion",
        "kms:ScheduleKeyDeletion",
        "kms:DisableKeyRotation",
    }
)
#: The administrators read the policy and the key without any IAM permission.
ADMINISTRATOR_READS = frozenset({"kms:DescribeKey", "kms:GetKeyPolicy"})


@cache
def _kms_model() -> botocore.model.ServiceModel:
    return botocore.session.get_session().get_service_model("kms")


def _action_names(operation: str) -> tuple[str, ...]:
    # The one operation whose IAM actions are not named after it: it needs both halves.
    if operation == "ReEncrypt":
        return ("kms:ReEncryptFrom", "kms:ReEncryptTo")
    return (f"kms:{operation}",)


@cache
def kms_actions() -> tuple[str, ...]:
    """Every IAM action of every KMS operation in botocore's service model."""
    return tuple(sorted(a for op in _kms_model().operation_names for a in _action_names(op)))


@cache
def _operations_taking(member: str) -> frozenset[str]:
    model = _kms_model()
    actions: set[str] = set()
    for operation in model.operation_names:
        shape = model.operation_model(operation).input_shape
        names = set(shape.members) if shape is not None else set()
        if any(name.endswith(member) for name in names):
            actions.update(_action_names(operation))
    return frozenset(actions)


def recipient_actions() -> frozenset[str]:
    return _operations_taking("Recipient")


def context_actions() -> frozenset[str]:
    return _operations_taking("EncryptionContext")


class Network(Enum):
    VAULT_VPC = "vault-vpc"
    OTHER_VPC = "other-vpc"
    OUTSIDE = "outside"


class Attestation(Enum):
    NONE = "none"
    #: A document of the first (current) image.
    CURRENT = "current"
    #: A document of the last listed image (the current one when only one is listed).
    FOLLOWING = "following"
    WRONG = "wrong-pcrs"
    #: Debug mode: PCR0, 1, 2 and 8 zero; PCR3 still the instance role's.
    DEBUG = "debug"


@dataclass(frozen=True)
class Deployment:
    """What the CDK app passes to ``build_key_policy``, and so what the policy names.

    ``region`` is the region of this copy of the key, ``admin_role_arn`` the execution role
    that deploys it there, and ``other_admin_role_arns`` the execution roles of the other
    regions that hold a copy (the primary's, or the replicas').
    """

    account: str
    region: str
    instance_role_arn: str
    api_role_arn: str
    api_function_arn: str
    admin_role_arn: str
    vpc_id: str
    images: tuple[EnclaveMeasurements, ...]
    partition: str = "aws"
    other_admin_role_arns: tuple[str, ...] = ()

    @property
    def administrators(self) -> frozenset[str]:
        return frozenset((self.admin_role_arn, *self.other_admin_role_arns))

    @property
    def key_arn(self) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:key/{KEY_ID}"

    @property
    def pcr3(self) -> str:
        return hashlib.sha384(b"\x00" * 48 + self.instance_role_arn.encode()).hexdigest()

    def principals(self) -> tuple[Principal, ...]:
        iam = f"arn:{self.partition}:iam::{self.account}"
        exec_role = f"{iam}:role/cdk-hnb659fds-cfn-exec-role-{self.account}"
        # Tagged as the README tells for execution roles, so only the key policy stops them.
        others = tuple(
            Principal("other-region-administrator" + (f"-{i + 1}" if i else ""), arn, network_excluded=True)
            for i, arn in enumerate(self.other_admin_role_arns)
        )
        return (
            Principal("root", f"{iam}:root"),
            Principal("administrator", self.admin_role_arn, network_excluded=True),
            *others,
            # Execution roles that are not this deployment's: a region without a copy of the
            # key, and another CDK app's bootstrap (another qualifier) in this region.
            Principal("unlisted-region-exec-role", f"{exec_role}-ap-southeast-7", network_excluded=True),
            Principal(
                "other-qualifier-exec-role",
                f"{iam}:role/cdk-otherapp1-cfn-exec-role-{self.account}-{self.region}",
                network_excluded=True,
            ),
            Principal("instance", self.instance_role_arn),
            Principal("api", self.api_role_arn),
            Principal("canary-vpc", f"{iam}:role/vault/nitro-vault-canary-CanaryVpcServiceRole"),
            Principal("canary-no-vpc", f"{iam}:role/vault/nitro-vault-canary-CanaryNoVpcServiceRole"),
            Principal("network-excluded", f"{iam}:role/deployer", network_excluded=True),
            Principal("unknown", f"{iam}:role/someone"),
            Principal("foreign", self.instance_role_arn.replace(self.account, "999999999999")),
        )


@dataclass(frozen=True)
class Principal:
    name: str
    arn: str
    network_excluded: bool = False

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class Call:
    """One request to the vault key. ``iam`` is what the caller's IAM policies allow."""

    principal: Principal
    action: str
    attestation: Attestation = Attestation.NONE
    network: Network = Network.VAULT_VPC
    vault_context: bool = True
    key_pair_spec: str = "ECC_NIST_P384"
    #: The API role's call comes from the API function (Lambda sets lambda:SourceFunctionArn).
    from_function: bool = True
    iam: tuple[str, ...] = ("*",)
    #: Sign as a session of the role (``arn:...:sts::...:assumed-role/<name>/s``).
    session: bool = False

    def request(self, deployment: Deployment) -> RequestContext:
        keys: dict[str, list[str]] = {
            "aws:PrincipalArn": [self.principal.arn],
            "aws:PrincipalAccount": [self.principal.account],
            "aws:PrincipalIsAWSService": ["false"],
            "aws:ViaAWSService": ["false"],
            "kms:CallerAccount": [self.principal.account],
        }
        if self.principal.network_excluded:
            keys[NETWORK_TAG] = ["true"]
        if self.network is Network.VAULT_VPC:
            keys["aws:SourceVpc"] = [deployment.vpc_id]
        elif self.network is Network.OTHER_VPC:
            keys["aws:SourceVpc"] = ["vpc-0ffffffffffffffff"]
        if self.principal.arn == deployment.api_role_arn and self.from_function:
            keys["lambda:SourceFunctionArn"] = [deployment.api_function_arn]
        if self.vault_context and self.action in context_actions():
            keys["kms:EncryptionContext:vault_id"] = ["v_0123456789abcdef"]
            keys["kms:EncryptionContextKeys"] = ["vault_id"]
        if self.action.startswith("kms:GenerateDataKeyPair"):
            keys["kms:DataKeyPairSpec"] = [self.key_pair_spec]
        if self.action in recipient_actions():
            keys.update(attestation_keys(deployment, self.attestation))
        principal = self.principal.arn
        if self.session and ":role/" in principal:
            name = principal.rsplit("/", 1)[1]
            principal = f"arn:{deployment.partition}:sts::{self.principal.account}:assumed-role/{name}/s"
        return RequestContext(
            principal_arn=principal,
            action=self.action,
            resource=deployment.key_arn,
            keys=keys,
            iam_allowed_actions=self.iam,
        )


def attestation_keys(deployment: Deployment, attestation: Attestation) -> dict[str, list[str]]:
    if attestation is Attestation.NONE:
        return {}
    if attestation is Attestation.CURRENT:
        image = deployment.images[0]
        pcrs = {0: image.pcr0, 1: image.pcr1, 2: image.pcr2, 8: image.pcr8}
    elif attestation is Attestation.FOLLOWING:
        image = deployment.images[-1]
        pcrs = {0: image.pcr0, 1: image.pcr1, 2: image.pcr2, 8: image.pcr8}
    elif attestation is Attestation.WRONG:
        pcrs = {i: hashlib.sha384(b"another image %d" % i).hexdigest() for i in (0, 1, 2, 8)}
    else:
        pcrs = {i: "00" * 48 for i in (0, 1, 2, 8)}
    keys = {f"kms:RecipientAttestation:PCR{i}": [v] for i, v in pcrs.items() if v is not None}
    keys["kms:RecipientAttestation:PCR3"] = [deployment.pcr3]
    keys["kms:RecipientAttestation:ImageSha384"] = keys["kms:RecipientAttestation:PCR0"]
    return keys


def _iam_allows(call: Call) -> bool:
    def matches(pattern: str) -> bool:
        prefix = pattern.lower().rstrip("*")
        action = call.action.lower()
        return action.startswith(prefix) if pattern.endswith("*") else action == pattern.lower()

    return any(matches(pattern) for pattern in call.iam)


def expected(deployment: Deployment, call: Call) -> bool:
    """The table: whether KMS should let ``call`` through the vault key's policy."""
    who = call.principal
    if who.account != deployment.account:
        return False  # identity perimeter
    if not who.network_excluded and call.network is not Network.VAULT_VPC:
        return False  # network perimeter
    if call.action == "kms:Decrypt":
        # Only the attested enclave on a vault instance, only for a vault's key.
        return (
            who.arn == deployment.instance_role_arn
            and call.attestation in (Attestation.CURRENT, Attestation.FOLLOWING)
            and call.vault_context
        )
    if call.action == "kms:GenerateDataKeyPairWithoutPlaintext":
        # Only the API function makes vault key pairs, bound to a vault id.
        return (
            who.arn == deployment.api_role_arn
            and call.from_function
            and call.vault_context
            and call.key_pair_spec == "ECC_NIST_P384"
        )
    if call.action in ADMINISTRATOR_ONLY:
        return who.arn in deployment.administrators
    if who.arn in deployment.administrators and call.action in ADMINISTRATOR_READS:
        return True
    if call.action in IAM_MANAGEMENT:
        # The root user holds every IAM permission; a role only what its policies say.
        return who.name == "root" or _iam_allows(call)
    # Everything else -- grants, re-encryption, plaintext data keys, Encrypt, other key
    # types' operations, account-level calls -- nobody.
    return False


def matrix(deployment: Deployment) -> Iterator[Call]:
    """Every principal x every KMS action x every kind of attestation, the rest favourable."""
    for principal in deployment.principals():
        for action in kms_actions():
            for attestation in Attestation:
                yield Call(principal, action, attestation)


def check(policy: Mapping[str, object], deployment: Deployment, call: Call) -> Decision:
    """Evaluate ``call``; fail with the call and the decision when the table disagrees."""
    decision = evaluate(policy, call.request(deployment))
    assert "cannot be evaluated" not in decision.reason, decision.reason
    assert decision.allowed == expected(deployment, call), (call, decision)
    return decision
