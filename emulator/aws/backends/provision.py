"""Creating the vault's resources on a backend: the table and the KMS root key with its alias.

Backends create nothing themselves. The key policy is enforced by the emulator's KMS
attestation front, not by the backend; it is still attached to the backend's key so
that ``GetKeyPolicy`` returns the document the front enforces, on backends that store
policies without misapplying them (``AwsBackend.stores_key_policies``; not moto).

Provisioning is idempotent: an existing table and an existing alias are reused, so a
backend that kept its state (``up --persist``) keeps its table and key ids. LocalStack's
free edition keeps DynamoDB on disk but not its KMS keys; there a :class:`KeyMaterialStore`
in the state directory records the id and material of each key provisioning creates,
and a key missing after a restart is created again with both (LocalStack's
``_custom_id_`` and ``_custom_key_material_`` tags): the same ARN, the same ciphertexts.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
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
KEY_STORE_NAME = "kms-key-material.json"
#: LocalStack's CreateKey tags that set a key's id and its (base64) material.
CUSTOM_ID_TAG = "_custom_id_"
CUSTOM_KEY_MATERIAL_TAG = "_custom_key_material_"
#: AES-256, what a SYMMETRIC_DEFAULT key holds.
_SYMMETRIC_KEY_BYTES = 32


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    material: bytes


@dataclass(frozen=True)
class KeyMaterialStore:
    """``{alias: {key_id, material}}`` in a JSON file (mode 0600), written atomically."""

    path: Path

    def load(self) -> dict[str, StoredKey]:
        if not self.path.is_file():
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                alias: StoredKey(str(entry["key_id"]), base64.b64decode(entry["material"], validate=True))
                for alias, entry in document.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"{self.path} cannot be read ({type(exc).__name__}); "
                "run `vault-emulator reset` to start afresh (this deletes the persisted vaults)"
            ) from exc

    def get(self, alias: str) -> StoredKey | None:
        return self.load().get(alias)

    def put(self, alias: str, key: StoredKey) -> None:
        entries = self.load()
        entries[alias] = key
        document = {
            name: {"key_id": entry.key_id, "material": base64.b64encode(entry.material).decode()}
            for name, entry in sorted(entries.items())
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp creates the file 0600: the material is as secret as the PKI's keys.
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


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


def _recorded_key(store: KeyMaterialStore, alias: str) -> StoredKey:
    """The id and material ``alias`` had, or new ones, recorded before the key is created."""
    stored = store.get(alias)
    if stored is None:
        stored = StoredKey(str(uuid.uuid4()), secrets.token_bytes(_SYMMETRIC_KEY_BYTES))
        store.put(alias, stored)
    return stored


def _ensure_key(
    kms: KMSClient, alias: str, description: str, policy: str | None, store: KeyMaterialStore | None
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
    if store is not None:
        stored = _recorded_key(store, alias)
        arguments["Tags"] = [
            {"TagKey": CUSTOM_ID_TAG, "TagValue": stored.key_id},
            {"TagKey": CUSTOM_KEY_MATERIAL_TAG, "TagValue": base64.b64encode(stored.material).decode()},
        ]
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
    key_store: KeyMaterialStore | None = None,
) -> ProvisionedResources:
    """Create the vault table (waiting for ACTIVE) and the symmetric root key with ``key_alias``.

    ``key_policy`` is attached where ``backend.stores_key_policies``, and ignored
    elsewhere (``key_policy_attached`` says which). Idempotent: an existing table is
    reused, and an existing alias keeps its key (its policy replaced by ``key_policy``).

    ``key_store``, on a backend that ``accepts_custom_key_material``, records a new
    key's id and material, and recreates a recorded key its alias lost (ignored elsewhere:
    moto keeps keys in its own snapshot).
    """
    if not key_alias.startswith("alias/"):
        raise ValueError(f"a KMS alias starts with 'alias/', not {key_alias!r}")
    table_arn = _ensure_table(backend.client("dynamodb"), table_name, timeout)
    attach = key_policy is not None and backend.stores_key_policies
    policy = json.dumps(dict(key_policy)) if attach and key_policy is not None else None
    store = key_store if backend.accepts_custom_key_material else None
    metadata, attached = _ensure_key(backend.client("kms"), key_alias, key_description, policy, store)
    return ProvisionedResources(
        table_name=table_name,
        table_arn=table_arn,
        key_id=str(metadata["KeyId"]),
        key_arn=str(metadata["Arn"]),
        key_alias=key_alias,
        key_policy_attached=attached,
    )
