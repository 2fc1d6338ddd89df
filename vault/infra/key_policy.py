"""The vault KMS key policy, built in one place for the CDK app and the emulator.

The decrypt statement carries the enclave's measurements from the start (decision
D13): there is no window in which the instance role can decrypt without an
attestation document. Values may be CDK tokens (opaque strings); the builder only
places them, it never inspects them, except ``measurements`` which must be concrete.
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
NETWORK_EXCLUDE_TAG = "dp:exclude:network"
PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR3", "PCR8")
_PCR_HEX = re.compile(r"^[0-9a-fA-F]{96}$")


class MeasurementsError(ValueError):
    """Measurements are missing or malformed."""


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
            if not isinstance(value, str) or not _PCR_HEX.match(value):
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
    #: The measured enclave; ``None`` only with ``allow_unattested_decrypt`` (documented unsafe mode).
    measurements: EnclaveMeasurements | None
    #: PCR3 value; by default derived from ``instance_role_arn`` (which must then be concrete).
    pcr3: str | None = None
    partition: str = "aws"
    api_function_arn: str | None = None
    admin_role_arn: str | None = None
    vpc_id: str | None = None
    allow_unattested_decrypt: bool = False


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
    # No IAM policy can ever grant Decrypt: the account root is allowed everything but it.
    statements.append(
        {
            "Sid": ROOT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": root},
            "NotAction": "kms:Decrypt",
            "Resource": "*",
        }
    )
    if params.admin_role_arn is not None:
        statements.append(
            {
                "Sid": ADMIN_SID,
                "Effect": "Allow",
                "Principal": {"AWS": params.admin_role_arn},
                "Action": ["kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:DescribeKey"],
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
    decrypt_conditions: dict[str, Any] = {
        "StringEquals": {"kms:CallerAccount": account},
        "Null": {f"kms:EncryptionContext:{ENCRYPTION_CONTEXT_KEY}": "false"},
    }
    if params.measurements is not None:
        pcr3 = params.pcr3 if params.pcr3 is not None else pcr3_for_role_arn(params.instance_role_arn)
        decrypt_conditions["StringEqualsIgnoreCase"] = attestation_conditions(params.measurements, pcr3)
    elif not params.allow_unattested_decrypt:
        raise MeasurementsError(
            "the enclave decrypt statement needs enclave measurements "
            "(or the explicit unsafe mode allow_unattested_decrypt=True)"
        )
    statements.append(
        {
            "Sid": DECRYPT_SID,
            "Effect": "Allow",
            "Principal": {"AWS": params.instance_role_arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": decrypt_conditions,
        }
    )
    return {"Version": "2012-10-17", "Statement": statements}
