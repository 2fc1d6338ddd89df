"""What the KMS front does with each KMS operation: one table, operation → treatment.

Every operation of the KMS API (botocore's service model) is listed once:

``IMPLEMENTED``
    Answered by the front itself (``Decrypt``, ``ReEncrypt``, ``GenerateDataKeyPair``,
    ``GenerateDataKeyPairWithoutPlaintext``, ``DeriveSharedSecret``): key policy and key
    state checked by the front, the backend used only for its key material.
``GATED``
    For a key the front fronts (one whose deployed key policy it was given), the front
    checks the key's state and evaluates that policy for ``action`` with the caller from
    the verified signature; only an allowed request is forwarded. Requests for other
    keys are forwarded as they are.
``FORWARDED``
    Operations on no key (``CreateKey``, ``ListKeys``, custom key stores): forwarded.

``takes_recipient`` marks the operations KMS accepts a ``Recipient`` on (``Decrypt``,
``GenerateDataKey``, ``GenerateDataKeyPair``, ``GenerateRandom``, ``DeriveSharedSecret``):
with one, the front answers them itself whatever their treatment, with
``CiphertextForRecipient`` in place of the plaintext.

An operation missing from the table is refused (``UnknownOperationException``), and so is
a ``Recipient`` on any other operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from emulator.aws.kms.key_states import KeyUse


class Treatment(Enum):
    IMPLEMENTED = "implemented"
    GATED = "gated"
    FORWARDED = "forwarded"


@dataclass(frozen=True)
class Operation:
    name: str
    treatment: Treatment
    #: The request member that names the key (gated operations).
    key_member: str | None = "KeyId"
    use: KeyUse = KeyUse.ANY
    #: The request may change a key's state: the front's state cache is dropped after it.
    changes_state: bool = False
    #: The action the key policy is asked about; ``kms:<name>`` unless given.
    policy_action: str | None = None
    #: Replaces the key policy: once the backend took it, the front enforces it (as KMS would).
    replaces_policy: bool = False
    #: KMS accepts a ``Recipient`` (an attestation document) on it.
    takes_recipient: bool = False

    @property
    def action(self) -> str:
        return self.policy_action or f"kms:{self.name}"


def _implemented(name: str, *, takes_recipient: bool = False) -> Operation:
    return Operation(name, Treatment.IMPLEMENTED, use=KeyUse.CRYPTOGRAPHIC, takes_recipient=takes_recipient)


def _gated(
    name: str, use: KeyUse = KeyUse.ANY, *, key_member: str = "KeyId", changes_state: bool = False
) -> Operation:
    return Operation(name, Treatment.GATED, key_member=key_member, use=use, changes_state=changes_state)


def _forwarded(name: str) -> Operation:
    return Operation(name, Treatment.FORWARDED, key_member=None)


_CRYPTO = KeyUse.CRYPTOGRAPHIC
_MANAGE = KeyUse.NOT_PENDING_DELETION

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _implemented("Decrypt", takes_recipient=True),
        _implemented("ReEncrypt"),
        # Neither backend generates data key pairs as KMS does (moto lacks both operations).
        _implemented("GenerateDataKeyPair", takes_recipient=True),
        _implemented("GenerateDataKeyPairWithoutPlaintext"),
        # moto has no DeriveSharedSecret.
        _implemented("DeriveSharedSecret", takes_recipient=True),
        # Cryptographic operations and grants: Enabled keys only.
        _gated("Encrypt", _CRYPTO),
        Operation("GenerateDataKey", Treatment.GATED, use=_CRYPTO, takes_recipient=True),
        _gated("GenerateDataKeyWithoutPlaintext", _CRYPTO),
        _gated("GenerateMac", _CRYPTO),
        _gated("VerifyMac", _CRYPTO),
        _gated("Sign", _CRYPTO),
        _gated("Verify", _CRYPTO),
        _gated("GetPublicKey", _CRYPTO),
        _gated("Encapsulate", _CRYPTO),
        _gated("Decapsulate", _CRYPTO),
        _gated("CreateGrant", _CRYPTO),
        # Key management.
        Operation("PutKeyPolicy", Treatment.GATED, replaces_policy=True),
        _gated("GetKeyPolicy"),
        _gated("ListKeyPolicies"),
        _gated("DescribeKey"),
        _gated("GetKeyLastUsage"),
        _gated("ListGrants"),
        _gated("RetireGrant"),
        _gated("RevokeGrant"),
        _gated("ListResourceTags"),
        _gated("GetKeyRotationStatus"),
        _gated("ListKeyRotations"),
        _gated("TagResource", _MANAGE),
        _gated("UntagResource", _MANAGE),
        _gated("UpdateKeyDescription", _MANAGE),
        _gated("EnableKeyRotation", _MANAGE),
        _gated("DisableKeyRotation", _MANAGE),
        _gated("RotateKeyOnDemand", _CRYPTO),
        _gated("ReplicateKey", _MANAGE),
        _gated("UpdatePrimaryRegion", _MANAGE),
        _gated("GetParametersForImport", _MANAGE),
        _gated("ImportKeyMaterial", _MANAGE),
        _gated("DeleteImportedKeyMaterial", _MANAGE),
        _gated("CreateAlias", _MANAGE, key_member="TargetKeyId"),
        _gated("UpdateAlias", _MANAGE, key_member="TargetKeyId"),
        _gated("DeleteAlias", key_member="AliasName"),
        # Key state changes: the front's state cache is dropped after each.
        _gated("DisableKey", _MANAGE, changes_state=True),
        _gated("EnableKey", _MANAGE, changes_state=True),
        _gated("ScheduleKeyDeletion", _MANAGE, changes_state=True),
        _gated("CancelKeyDeletion", KeyUse.PENDING_DELETION_ONLY, changes_state=True),
        # On no key.
        _forwarded("CreateKey"),
        _forwarded("ListKeys"),
        _forwarded("ListAliases"),
        _forwarded("ListRetirableGrants"),
        Operation("GenerateRandom", Treatment.FORWARDED, key_member=None, takes_recipient=True),
        _forwarded("CreateCustomKeyStore"),
        _forwarded("ConnectCustomKeyStore"),
        _forwarded("DisconnectCustomKeyStore"),
        _forwarded("DeleteCustomKeyStore"),
        _forwarded("DescribeCustomKeyStores"),
        _forwarded("UpdateCustomKeyStore"),
    )
}


def operation(name: str) -> Operation | None:
    return OPERATIONS.get(name)
