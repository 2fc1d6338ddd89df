"""Per-vault key pairs from KMS (spec 2.1, decision D10).

The API only ever holds the public key and the KMS ciphertext of the private key; the
vault id is bound as encryption context, so one vault's encrypted key cannot be
presented to KMS as another's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from vault.api.clients import aws_error_code
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY, KEY_PAIR_SPEC


class KeyGenerationError(Exception):
    """KMS did not produce a key pair; ``str()`` is the AWS error code, safe to log."""


@dataclass(frozen=True)
class VaultKeyPair:
    #: DER SubjectPublicKeyInfo.
    public_key: bytes
    #: KMS ciphertext of the DER PKCS#8 private key.
    encrypted_private_key: bytes


class KeyPairGenerator(Protocol):
    def generate(self, vault_id: str) -> VaultKeyPair: ...


class KmsKeyPairGenerator:
    """``GenerateDataKeyPairWithoutPlaintext`` under the vault's KMS key."""

    def __init__(self, client: Any, key_arn: str) -> None:
        self._client = client
        self._key_arn = key_arn

    def generate(self, vault_id: str) -> VaultKeyPair:
        try:
            reply = self._client.generate_data_key_pair_without_plaintext(
                KeyId=self._key_arn,
                KeyPairSpec=KEY_PAIR_SPEC,
                EncryptionContext={ENCRYPTION_CONTEXT_KEY: vault_id},
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyGenerationError(aws_error_code(exc)) from exc
        return VaultKeyPair(
            public_key=bytes(reply["PublicKey"]),
            encrypted_private_key=bytes(reply["PrivateKeyCiphertextBlob"]),
        )
