"""The vault KMS key policy, built in one place for the CDK app and the emulator.

The decrypt statement carries the enclave's measurements from the start (decision
D13): there is no window in which the instance role can decrypt without an
attestation document. Values may be CDK tokens (opaque strings); the builder only
places them, it never inspects them, except the measurements, which must be concrete.

To replace the enclave image without an outage, the policy may name several images:
one decrypt statement per image, each pinning all of that image's PCRs. A single
statement with a list of values per PCR would instead accept any combination, such as
the old image's PCR0 with the new image's PCR2.

Nothing but an attested enclave reaches the vault key (decision D17). Upstream's root
statement allows everything but ``kms:Decrypt`` (``NotAction``), which leaves every
other path open to IAM: ``CreateGrant`` (a grant for Decrypt), ``ReEncryptFrom`` (the
vault's encrypted private key re-wrapped under a key the caller controls),
``PutKeyPolicy`` and ``ReplicateKey`` (a new policy, or a replica with a policy of the
caller's choosing). Here:

* explicit ``Deny`` statements, which neither IAM nor grants can override, refuse
  ``Decrypt`` to every principal but the instance role and every request without a
  Nitro attestation document; ``CreateGrant``, ``ReEncrypt*``, ``Encrypt`` and every
  ``GenerateDataKey*`` but the API's ``GenerateDataKeyPairWithoutPlaintext`` to
  everyone; and policy changes, replication and deletion to all but the key
  administrator;
* the account root (so IAM) is allowed only the listed management actions
  (:data:`ROOT_ACTIONS`), none of which reveals or re-wraps key material;
* the key administrators are allowed :data:`ADMIN_ACTIONS`. Without an administrator
  nobody may change the policy, which AWS accepts only with
  ``BypassPolicyLockoutSafetyCheck``; the emulator does not need one.

Upstream's administrator is the Step Functions role that writes the PCRs after each
deploy (``kms:ViaService`` = states); with the PCRs in the policy from the first deploy
(D13) there is no such job, so the administrators are the deploying roles: the CDK
bootstrap's CloudFormation execution role of every region that holds a copy of the key
(the primary's region and each replica region), named one by one. Every copy carries the
same list, because of what KMS checks:

* creating a key or a replica passes KMS's lockout safety check only if the new policy
  lets the creating principal call ``PutKeyPolicy``: each region's role must be named in
  the policy of the copy it creates;
* ``ReplicateKey`` is authorized by the *primary* key's policy, and CloudFormation in the
  replica region calls it with that region's role: the primary must name the replica
  regions' roles;
* ``UpdatePrimaryRegion`` needs the permission on both the primary and the replica.

Giving each region's role every administrative action on every copy widens nothing: a
replica shares the key material, so whoever administers one copy (and can write its
policy) already holds what the administrator of any other copy holds.

The administrators are exact ARNs, in the allow's ``Principal`` (which takes no
wildcards) and in the deny's ``ArnNotEquals aws:PrincipalArn`` list. A pattern in the
deny, such as ``role/cdk-<qualifier>-cfn-exec-role-<account>-*``, would buy nothing,
since the allow must name exact ARNs anyway, and it would leave the deny open to any
role someone in the account creates under a matching name, or to another region's
bootstrap that deploys something else. A region added later is first added to the
list and the primary redeployed, then the replica deployed; KMS refuses a principal
that does not exist, so every listed region must be bootstrapped first. The
documented unsafe mode drops only the attestation deny; every other guard stays.

The administrators remain able to write a policy that grants them Decrypt: whoever
deploys the key decides its policy. That is threat T2 of the upstream model, narrowed
from "any sufficiently privileged IAM principal" to the named roles.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENCRYPTION_CONTEXT_KEY = "vault_id"
KEY_PAIR_SPEC = "ECC_NIST_P384"
DECRYPT_SID = "AllowDecryptByEnclave"
ENCRYPT_SID = "AllowEncryptByLambda"
ROOT_SID = "EnableIAMUserPermissions"
ADMIN_SID = "AllowKeyAdministration"
DENY_OTHER_DECRYPT_SID = "DenyDecryptExceptByTheInstanceRole"
DENY_UNATTESTED_SID = "DenyDecryptWithoutAttestation"
DENY_REWRAP_SID = "DenyGrantsReEncryptionAndPlaintextDataKeys"
DENY_ADMIN_SID = "DenyKeyAdministrationExceptByTheAdministrator"
#: What the account's IAM policies may allow on the key: management that neither reveals
#: nor re-wraps key material, and neither changes the policy nor copies the key.
ROOT_ACTIONS = (
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
)
#: Only the key administrator: each of these can hand the key (or a copy with another
#: policy) to someone, or destroy it.
ADMIN_ONLY_ACTIONS = (
    "kms:PutKeyPolicy",
    "kms:ReplicateKey",
    "kms:UpdatePrimaryRegion",
    "kms:ScheduleKeyDeletion",
    "kms:DisableKeyRotation",
)
ADMIN_ACTIONS = ("kms:DescribeKey", "kms:GetKeyPolicy", *ADMIN_ONLY_ACTIONS)
#: Never allowed to anyone: each yields key material outside an enclave, a re-wrapped copy
#: of it, a grant (which could carry Decrypt), or a ciphertext under the vault key that
#: the API did not make.
NEVER_ALLOWED_ACTIONS = (
    "kms:CreateGrant",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyWithoutPlaintext",
)
NETWORK_EXCLUDE_TAG = "dp:exclude:network"
PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR3", "PCR8")
_PCR_HEX = re.compile(r"^[0-9a-fA-F]{96}$")
_ZERO_PCR = "0" * 96


class MeasurementsError(ValueError):
    """Measurements are missing or malformed."""


class AdministratorsError(ValueError):
    """The key administrators are inconsistent (listed twice, a pattern, or without the first)."""


def pcr3_for_role_arn(role_arn: str) -> str:
    """PCR3 of an enclave on an instance with ``role_arn``: SHA-384(48 zero bytes || ARN)."""
    return hashlib.sha384(b"\x00" * 48 + role_arn.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EnclaveMeasurements:
    """PCRs of an enclave image (lowercase hex SHA-384 values)."""

    pcr0: str
    pcr1: str
    pcr2: str
    pcr8: str | None = None

    def __post_init__(self) -> None:
        for name in ("pcr0", "pcr1", "pcr2", "pcr8"):
            value = getattr(self, name)
            if value is None and name == "pcr8":
                continue
            if not isinstance(value, str) or not _PCR_HEX.fullmatch(value):
                raise MeasurementsError(f"{name.upper()} must be 96 hex characters")
            object.__setattr__(self, name, value.lower())

    @classmethod
    def from_nitro_cli(cls, document: Mapping[str, Any]) -> EnclaveMeasurements:
        """Parse ``nitro-cli build-enclave`` output (``{"Measurements": {...}}``) or its inner map."""
        inner = document.get("Measurements", document)
        if not isinstance(inner, Mapping):
            raise MeasurementsError("Measurements must be an object")
        try:
            return cls(pcr0=inner["PCR0"], pcr1=inner["PCR1"], pcr2=inner["PCR2"], pcr8=inner.get("PCR8"))
        except KeyError as exc:
            raise MeasurementsError(f"measurements lack {exc.args[0]}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> EnclaveMeasurements:
        try:
            return cls.from_nitro_cli(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise MeasurementsError(f"cannot read measurements from {path}: {exc}") from exc

    def to_nitro_cli(self) -> dict[str, Any]:
        pcrs = {"HashAlgorithm": "Sha384 { ... }", "PCR0": self.pcr0, "PCR1": self.pcr1, "PCR2": self.pcr2}
        if self.pcr8 is not None:
            pcrs["PCR8"] = self.pcr8
        return {"Measurements": pcrs}


@dataclass(frozen=True)
class KeyPolicyParams:
    account_id: str
    instance_role_arn: str
    api_role_arn: str
    #: The measured enclave (the current image); ``None`` only with ``allow_unattested_decrypt``
    #: (documented unsafe mode).
    measurements: EnclaveMeasurements | None
    #: PCR3 value; by default derived from ``instance_role_arn`` (which must then be concrete).
    pcr3: str | None = None
    partition: str = "aws"
    api_function_arn: str | None = None
    #: The key administrator: with :attr:`additional_admin_role_arns`, the only principals that
    #: may change the policy, replicate or delete the key. The principal that creates this
    #: copy of the key must be one of them (KMS's lockout check). An exact ARN, no pattern.
    admin_role_arn: str | None = None
    vpc_id: str | None = None
    allow_unattested_decrypt: bool = False
    #: Other images that may decrypt too, each in a statement of its own: the image being
    #: rolled out or rolled away from while instances are replaced.
    additional_measurements: tuple[EnclaveMeasurements, ...] = ()
    #: Further administrators: the execution roles of the deployment's other regions, so that
    #: a replica region's deployment may call ReplicateKey on the primary key.
    additional_admin_role_arns: tuple[str, ...] = ()

    def admin_role_arns(self) -> tuple[str, ...]:
        """Every key administrator, :attr:`admin_role_arn` first; refuses inconsistent lists."""
        if self.admin_role_arn is None:
            if self.additional_admin_role_arns:
                raise AdministratorsError("additional administrators need the first administrator")
            return ()
        arns = (self.admin_role_arn, *self.additional_admin_role_arns)
        if len(set(arns)) != len(arns):
            raise AdministratorsError("the same administrator is listed twice")
        for arn in arns:
            # Principal takes no wildcards, and a pattern in the deny would admit roles the
            # allow does not name.
            if "*" in arn or "?" in arn:
                raise AdministratorsError(f"an administrator must be one exact role ARN, not {arn!r}")
        return arns

    def measurement_sets(self) -> tuple[EnclaveMeasurements, ...]:
        """Every image allowed to decrypt, the current one first; refuses inconsistent sets."""
        if self.measurements is None:
            if self.additional_measurements:
                raise MeasurementsError("additional measurements need the current image's measurements")
            return ()
        sets = (self.measurements, *self.additional_measurements)
        if len(set(sets)) != len(sets):
            raise MeasurementsError("the same enclave measurements are listed twice")
        for image in sets:
            # Debug mode zeroes PCR0, 1, 2 and 8 and keeps PCR3: pinning zeros would let a
            # debug-mode enclave, whose memory the parent can read, decrypt.
            if _ZERO_PCR in (image.pcr0, image.pcr1, image.pcr2):
                raise MeasurementsError(
                    "PCR0, PCR1 and PCR2 must not be zero (a debug-mode enclave's values)"
                )
        return sets


def decrypt_sid(index: int) -> str:
    """Sid of the decrypt statement for the ``index``-th image (0: the current one)."""
    return DECRYPT_SID if index == 0 else f"{DECRYPT_SID}{index + 1}"


def attestation_conditions(measurements: EnclaveMeasurements, pcr3: str) -> dict[str, str]:
    conditions = {
        "kms:RecipientAttestation:ImageSha384": measurements.pcr0,
        "kms:RecipientAttestation:PCR1": measurements.pcr1,
        "kms:RecipientAttestation:PCR2": measurements.pcr2,
        "kms:RecipientAttestation:PCR3": pcr3,
    }
    if measurements.pcr8 is not None:
        conditions["kms:RecipientAttestation:PCR8"] = measurements.pcr8
    return conditions


def _decrypt_statement(
    sid: str, params: KeyPolicyParams, attestation: dict[str, str] | None
) -> dict[str, Any]:
    conditions: dict[str, Any] = {
        "StringEquals": {"kms:CallerAccount": params.account_id},
        "Null": {f"kms:EncryptionContext:{ENCRYPTION_CONTEXT_KEY}": "false"},
    }
    if attestation is not None:
        # Every PCR of one image in one statement: the conditions of a statement are ANDed.
        conditions["StringEqualsIgnoreCase"] = attestation
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": params.instance_role_arn},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": conditions,
    }


def _one_or_list(values: tuple[str, ...]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def _guard_statements(params: KeyPolicyParams) -> list[dict[str, Any]]:
    """Explicit denies: they hold whatever IAM policies, grants or other statements allow."""
    guards: list[dict[str, Any]] = [
        {
            "Sid": DENY_OTHER_DECRYPT_SID,
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "kms:Decrypt",
            "Resource": "*",
            # aws:PrincipalArn is the role's ARN for its sessions too; absent, the deny applies.
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": params.instance_role_arn}},
        }
    ]
    if not params.allow_unattested_decrypt:
        guards.append(
            {
                "Sid": DENY_UNATTESTED_SID,
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                # KMS sets the attestation keys only for a Recipient with a valid Nitro
                # Enclaves document: without one the answer would carry the plaintext.
                "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}},
            }
        )
    guards.append(
        {
            "Sid": DENY_REWRAP_SID,
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": list(NEVER_ALLOWED_ACTIONS),
            "Resource": "*",
        }
    )
    admin_guard: dict[str, Any] = {
        "Sid": DENY_ADMIN_SID,
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": list(ADMIN_ONLY_ACTIONS),
        "Resource": "*",
    }
    administrators = params.admin_role_arns()
    if administrators:
        # Negated with several values: the deny applies unless the caller is one of them.
        admin_guard["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": _one_or_list(administrators)}}
    guards.append(admin_guard)
    return guards


def build_key_policy(params: KeyPolicyParams) -> dict[str, Any]:
    """Return the key policy document as a JSON-ready dict."""
    account = params.account_id
    root = f"arn:{params.partition}:iam::{account}:root"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "IdentityPerimeter",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "kms:*",
            "Resource": "*",
            "Condition": {
                "StringNotEqualsIfExists": {"aws:PrincipalAccount": account},
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
                "StringNotEqualsIfExists": {"aws:SourceAccount": account},
                "Null": {"aws:SourceAccount": "false"},
                "Bool": {"aws:PrincipalIsAWSService": "true"},
            },
        },
    ]
    if params.vpc_id is not None:
        statements.append(
            {
                "Sid": "NetworkPerimeter",
                "Effect": "Deny",
                "Principal": {"AWS": "*"},
                "Action": "kms:*",
                "Resource": "*",
                "Condition": {
                    "StringNotEqualsIfExists": {
                        "aws:SourceVpc": params.vpc_id,
                        f"aws:PrincipalTag/{NETWORK_EXCLUDE_TAG}": "true",
                    },
                    "BoolIfExists": {"aws:PrincipalIsAWSService": "false", "aws:ViaAWSService": "false"},
                    "ArnNotLikeIfExists": {
                        "aws:PrincipalArn": f"arn:{params.partition}:iam::{account}:role/aws-service-role/*"
                    },
                },
            }
        )
    statements.extend(_guard_statements(params))
    # IAM policies of the account may allow these, and nothing else.
    statements.append(
        {
            "Sid": ROOT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "Action": list(ROOT_ACTIONS),
            "Resource": "*",
        }
    )
    administrators = params.admin_role_arns()
    if administrators:
        statements.append(
            {
                "Sid": ADMIN_SID,
                "Effect": "Allow",
                "Principal": {"AWS": _one_or_list(administrators)},
                "Action": list(ADMIN_ACTIONS),
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:CallerAccount": account}},
            }
        )
    encrypt_equals: dict[str, str] = {"kms:CallerAccount": account, "kms:DataKeyPairSpec": KEY_PAIR_SPEC}
    if params.api_function_arn is not None:
        encrypt_equals["lambda:SourceFunctionArn"] = params.api_function_arn
    statements.append(
        {
            "Sid": ENCRYPT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": params.api_role_arn},
            "Action": "kms:GenerateDataKeyPairWithoutPlaintext",
            "Resource": "*",
            "Condition": {
                "StringEquals": encrypt_equals,
                # Decision D10: every vault key pair is bound to its vault id.
                "Null": {f"kms:EncryptionContext:{ENCRYPTION_CONTEXT_KEY}": "false"},
            },
        }
    )
    images = params.measurement_sets()
    if images:
        pcr3 = params.pcr3 if params.pcr3 is not None else pcr3_for_role_arn(params.instance_role_arn)
        statements.extend(
            _decrypt_statement(decrypt_sid(index), params, attestation_conditions(image, pcr3))
            for index, image in enumerate(images)
        )
    elif params.allow_unattested_decrypt:
        statements.append(_decrypt_statement(DECRYPT_SID, params, None))
    else:
        raise MeasurementsError(
            "the enclave decrypt statement needs enclave measurements "
            "(or the explicit unsafe mode allow_unattested_decrypt=True)"
        )
    return {"Version": "2012-10-17", "Statement": statements}
