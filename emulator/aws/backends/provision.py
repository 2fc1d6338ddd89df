"""Creating the vault's resources on a backend: the table and the KMS root key with its alias.

Backends create nothing themselves. The key policy is enforced by the emulator's KMS
attestation front, not by the backend; it is still attached to the backend's key so
that ``GetKeyPolicy`` returns the document the front enforces, on backends that store
policies without misapplying them (``AwsBackend.stores_key_policies``; not moto).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from emulator.aws.backends.base import AwsBackend, BackendError
from vault.infra.table import create_table_kwargs

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_kms.type_defs import KeyMetadataTypeDef

DEFAULT_KEY_ALIAS = "alias/nitro-vault"
DEFAULT_KEY_DESCRIPTION = "nitro-vault root key (emulator)"


@dataclass(frozen=True)
class ProvisionedResources:
    table_name: str
    table_arn: str
    key_id: str
    key_arn: str
    key_alias: str
    #: False when no policy was given or the backend does not store key policies.
    key_policy_attached: bool


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _ensure_table(dynamodb: DynamoDBClient, table_name: str, timeout: float) -> str:
    try:
        dynamodb.create_table(**create_table_kwargs(table_name))
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
    deadline = time.monotonic() + timeout
    while True:
        table = dynamodb.describe_table(TableName=table_name)["Table"]
        if table["TableStatus"] == "ACTIVE":
            return str(table["TableArn"])
        if time.monotonic() >= deadline:
            raise BackendError(
                f"table {table_name} is {table['TableStatus']} after {timeout:.0f} s, not ACTIVE"
            )
        time.sleep(0.1)


def _existing_key(kms: KMSClient, alias: str) -> KeyMetadataTypeDef | None:
    try:
        metadata = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as exc:
        if _error_code(exc) == "NotFoundException":
            return None
        raise
    return metadata


def _ensure_key(
    kms: KMSClient, alias: str, description: str, policy: str | None
) -> tuple[KeyMetadataTypeDef, bool]:
    metadata = _existing_key(kms, alias)
    if metadata is not None:
        if policy is None:
            return metadata, False
        kms.put_key_policy(KeyId=metadata["KeyId"], PolicyName="default", Policy=policy)
        return metadata, True
    arguments: dict[str, Any] = {
        "KeySpec": "SYMMETRIC_DEFAULT",
        "KeyUsage": "ENCRYPT_DECRYPT",
        "Description": description,
    }
    if policy is not None:
        # Real KMS refuses a policy that would lock the caller out; the vault's policy
        # deliberately denies everyone Decrypt but the enclave, so the check is bypassed.
        arguments.update(Policy=policy, BypassPolicyLockoutSafetyCheck=True)
    metadata = kms.create_key(**arguments)["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    return metadata, policy is not None


def provision(
    backend: AwsBackend,
    table_name: str,
    *,
    key_alias: str = DEFAULT_KEY_ALIAS,
    key_policy: Mapping[str, Any] | None = None,
    key_description: str = DEFAULT_KEY_DESCRIPTION,
    timeout: float = 60.0,
) -> ProvisionedResources:
    """Create the vault table (waiting for ACTIVE) and the symmetric root key with ``key_alias``.

    ``key_policy`` is attached where ``backend.stores_key_policies``, and ignored
    elsewhere (``key_policy_attached`` says which). Idempotent: an existing table is
    reused, and an existing alias keeps its key (its policy replaced by ``key_policy``).
    """
    if not key_alias.startswith("alias/"):
        raise ValueError(f"a KMS alias starts with 'alias/', not {key_alias!r}")
    table_arn = _ensure_table(backend.client("dynamodb"), table_name, timeout)
    attach = key_policy is not None and backend.stores_key_policies
    policy = json.dumps(dict(key_policy)) if attach and key_policy is not None else None
    metadata, attached = _ensure_key(backend.client("kms"), key_alias, key_description, policy)
    return ProvisionedResources(
        table_name=table_name,
        table_arn=table_arn,
        key_id=str(metadata["KeyId"]),
        key_arn=str(metadata["Arn"]),
        key_alias=key_alias,
        key_policy_attached=attached,
    )
