"""Test doubles for the enclave's key path, shared by the tests of every tier and the benchmarks.

They live outside ``vault/`` so that the measured enclave image holds only what
production runs.

:class:`LocalKeyDecryptor` stands in for KMS ``Decrypt``: it wraps a vault's DER
PKCS#8 private key with AES-256-GCM under a master key that lives in the test process,
with the vault id as associated data. That keeps the property decision D10 asks of KMS
(a key blob encrypted for one vault cannot be replayed for another) so that tests of
every tier exercise it. :class:`VaultKey` is what the API would hold for a vault (public
key, suite, encrypted private key) plus helpers to seal field values and build the
enclave request, so that API, parent and enclave tests share one source of truth.
:func:`encode_binary` and :func:`encode_hex` write the two wire forms the enclave's
:mod:`vault.enclave.encoding` parses (only the API, via DynamoDB, and tests produce them).

Surface: ``LocalKeyDecryptor``, ``VaultKey``, ``TEST_CREDENTIAL``, ``encode_binary``, ``encode_hex``.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from vault.common import hpke
from vault.common.authorization import AuthorizationWire
from vault.common.messages import Credential, DecryptRequest, EnclaveRequest
from vault.common.suites import DEFAULT_SUITE, Suite
from vault.enclave.encoding import ENCODING_BINARY, SealedValue
from vault.enclave.key_decryptor import KeyDecryptError

#: Fake instance-role credentials (the test double ignores them).
TEST_CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": "ASIATESTACCESSKEY000", "SecretAccessKey": "test-secret-key", "Token": "test-token"}
)

_BLOB_MAGIC = b"LKD1"
_NONCE_LEN = 12
#: Separates ``hex(enc)`` from ``hex(ct)`` in the legacy form (spec 2.3).
HEX_SEPARATOR = "#"


def encode_binary(sealed: SealedValue) -> str:
    """The binary wire form of ``sealed``: padded base64 of ``enc || ct`` (what the API sends)."""
    return base64.b64encode(sealed.enc + sealed.ct).decode("ascii")


def encode_hex(sealed: SealedValue) -> str:
    """The legacy hex wire form of ``sealed``: ``hex(enc) + "#" + hex(ct)`` (only old vaults hold it)."""
    return f"{sealed.enc.hex()}{HEX_SEPARATOR}{sealed.ct.hex()}"


class LocalKeyDecryptor:
    """A :class:`~vault.enclave.key_decryptor.KeyDecryptor` for tests and demos.

    ``calls`` counts :meth:`decrypt_private_key` invocations, so tests can check that a
    request was refused before the (in production, expensive) key call.
    """

    def __init__(self, master_key: bytes | None = None) -> None:
        self._aead = AESGCM(master_key if master_key is not None else AESGCM.generate_key(256))
        self._lock = threading.Lock()
        self.calls = 0

    def __repr__(self) -> str:
        return f"LocalKeyDecryptor(calls={self.calls})"

    def encrypt_private_key(self, der: bytes, vault_id: str, authorizer: str | None = None) -> bytes:
        """Wrap ``der`` for ``vault_id`` (what KMS would return as the key's ciphertext).

        With ``authorizer`` (an authorizer key digest) the blob opens only for that
        authorizer too, as KMS does with both in the encryption context (decision D16).
        """
        nonce = os.urandom(_NONCE_LEN)
        return _BLOB_MAGIC + nonce + self._aead.encrypt(nonce, der, _context(vault_id, authorizer))

    def decrypt_private_key(
        self,
        *,
        ciphertext: bytes,
        vault_id: str,
        region: str,
        credential: Credential,
        authorizer: str | None = None,
    ) -> bytes:
        with self._lock:
            self.calls += 1
        if not ciphertext.startswith(_BLOB_MAGIC) or len(ciphertext) < len(_BLOB_MAGIC) + _NONCE_LEN + 16:
            raise KeyDecryptError("InvalidCiphertextException: not a key blob of this key decryptor")
        nonce = ciphertext[len(_BLOB_MAGIC) : len(_BLOB_MAGIC) + _NONCE_LEN]
        body = ciphertext[len(_BLOB_MAGIC) + _NONCE_LEN :]
        try:
            return self._aead.decrypt(nonce, body, _context(vault_id, authorizer))
        except InvalidTag:
            raise KeyDecryptError(
                "InvalidCiphertextException: the key ciphertext or its vault id (encryption context) "
                "does not match"
            ) from None

    def create_vault_key(
        self, vault_id: str, suite: Suite = DEFAULT_SUITE, authorizer: str | None = None
    ) -> VaultKey:
        """A fresh key pair for ``vault_id`` (and ``authorizer``); only its encrypted form is kept."""
        private = ec.generate_private_key(suite.kem_params.curve())
        der = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        public = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return VaultKey(vault_id, suite, public, self.encrypt_private_key(der, vault_id, authorizer))


def _context(vault_id: str, authorizer: str | None) -> bytes:
    # NUL cannot occur in a vault id, so the two parts cannot be confused.
    text = vault_id if authorizer is None else f"{vault_id}\x00{authorizer}"
    return text.encode("utf-8")


@dataclass(frozen=True)
class VaultKey:
    """What the API stores for a vault: suite, public key (DER SPKI), encrypted private key."""

    vault_id: str
    suite: Suite
    public_key: bytes = field(repr=False)
    encrypted_private_key: bytes = field(repr=False)

    def seal(self, name: str, value: str) -> SealedValue:
        """Encrypt ``value`` for field ``name`` as the API does (info = vault id, aad = name)."""
        aad = name.strip().lower().encode("utf-8")
        enc, ct = hpke.seal(
            self.suite, self.public_key, self.vault_id.encode("utf-8"), aad, value.encode("utf-8")
        )
        return SealedValue(enc, ct)

    def seal_field(self, name: str, value: str, *, legacy_hex: bool = False) -> str:
        """The wire form of a sealed field: binary (base64) or, for old vaults, hex."""
        sealed = self.seal(name, value)
        return encode_hex(sealed) if legacy_hex else encode_binary(sealed)

    def request(
        self,
        fields: Mapping[str, str],
        *,
        expressions: Mapping[str, str] | None = None,
        encoding: str | None = ENCODING_BINARY,
        region: str = "us-east-1",
        credential: Credential = TEST_CREDENTIAL,
        authorization: AuthorizationWire | None = None,
    ) -> EnclaveRequest:
        """An enclave request for already-sealed ``fields`` (wire form values)."""
        return EnclaveRequest(
            credential=credential,
            request=DecryptRequest(
                vault_id=self.vault_id,
                region=region,
                fields=dict(fields),
                suite_id=self.suite.suite_id_b64,
                encrypted_private_key=base64.b64encode(self.encrypted_private_key).decode("ascii"),
                expressions=dict(expressions) if expressions is not None else None,
                encoding=encoding,
                authorization=authorization,
            ),
        )
