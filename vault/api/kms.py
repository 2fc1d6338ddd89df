"""Per-vault key pairs from KMS (spec 2.1, decision D10), and the API's authorizer key (D16).

The API only ever holds the public key and the KMS ciphertext of the private key; the
vault id is bound as encryption context, so one vault's encrypted key cannot be
presented to KMS as another's. With an authorizer key, the digest of its public key is
bound beside it: the enclave asks for the vault key under the digest of the key that
signed the request's authorization, so only the API's own signatures open the vault.

:class:`KmsAuthorizationSigner` signs authorizations with an asymmetric KMS key
(``ECC_NIST_P256``, ``ECDSA_SHA_256``) that only the API's role may use (``kms:Sign``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from vault.api.clients import aws_error_code
from vault.common.authorization import (
    SIGNING_ALGORITHM,
    AuthorizationError,
    Signer,
    authorizer_context,
    load_authorizer_key,
)
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY, KEY_PAIR_SPEC


class KeyGenerationError(Exception):
    """KMS did not produce a key pair; ``str()`` is the AWS error code, safe to log."""


class SigningError(Exception):
    """KMS did not sign, or the key is not an authorizer key; ``str()`` is a code, safe to log."""


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

    def __init__(self, client: Any, key_arn: str, authorizer: Signer | None = None) -> None:
        self._client = client
        self._key_arn = key_arn
        self._authorizer = authorizer

    def encryption_context(self, vault_id: str) -> dict[str, str]:
        if self._authorizer is None:
            return {ENCRYPTION_CONTEXT_KEY: vault_id}
        try:
            public_key = self._authorizer.public_key
        except SigningError as exc:
            raise KeyGenerationError(str(exc)) from exc
        return authorizer_context(vault_id, public_key, ENCRYPTION_CONTEXT_KEY)

    def generate(self, vault_id: str) -> VaultKeyPair:
        context = self.encryption_context(vault_id)
        try:
            reply = self._client.generate_data_key_pair_without_plaintext(
                KeyId=self._key_arn, KeyPairSpec=KEY_PAIR_SPEC, EncryptionContext=context
            )
        except (ClientError, BotoCoreError) as exc:
            raise KeyGenerationError(aws_error_code(exc)) from exc
        return VaultKeyPair(
            public_key=bytes(reply["PublicKey"]),
            encrypted_private_key=bytes(reply["PrivateKeyCiphertextBlob"]),
        )


class KmsAuthorizationSigner:
    """:class:`~vault.common.authorization.Signer` over KMS ``Sign`` with the authorizer key.

    The public key is fetched once (``GetPublicKey``) and checked to be a key the enclave
    verifies; every signature is one ``Sign`` call (``RAW``: the signing input is 67 bytes).
    """

    def __init__(self, client: Any, key_arn: str, algorithm: str = SIGNING_ALGORITHM) -> None:
        self._client = client
        self._key_arn = key_arn
        self._algorithm = algorithm
        self._public_key: bytes | None = None
        self._lock = threading.Lock()

    @property
    def public_key(self) -> bytes:
        with self._lock:
            if self._public_key is None:
                self._public_key = self._fetch_public_key()
            return self._public_key

    def _fetch_public_key(self) -> bytes:
        try:
            reply = self._client.get_public_key(KeyId=self._key_arn)
        except (ClientError, BotoCoreError) as exc:
            raise SigningError(aws_error_code(exc)) from exc
        if self._algorithm not in reply.get("SigningAlgorithms", ()):
            raise SigningError("AuthorizerKeyAlgorithmMismatch")
        public_key = bytes(reply["PublicKey"])
        try:
            load_authorizer_key(public_key)
        except AuthorizationError as exc:
            raise SigningError(exc.code.value) from exc
        return public_key

    def sign(self, message: bytes) -> bytes:
        try:
            reply = self._client.sign(
                KeyId=self._key_arn, Message=message, MessageType="RAW", SigningAlgorithm=self._algorithm
            )
        except (ClientError, BotoCoreError) as exc:
            raise SigningError(aws_error_code(exc)) from exc
        return bytes(reply["Signature"])
