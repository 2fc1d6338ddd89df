"""How the enclave obtains a vault's private key from its encrypted form.

Production uses KMS ``Decrypt`` with a Recipient attestation document (see
``vault.enclave.kms_decryptor``). Everything else in the enclave depends only on
this interface.
"""

from __future__ import annotations

from typing import Protocol

from vault.common.messages import Credential, EnclaveErrorCode


class KeyDecryptError(Exception):
    """The private key could not be obtained; ``code`` says why, ``str()`` is safe to log."""

    def __init__(self, message: str, code: EnclaveErrorCode = EnclaveErrorCode.KEY_DECRYPT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class KeyDecryptor(Protocol):
    def decrypt_private_key(
        self,
        *,
        ciphertext: bytes,
        vault_id: str,
        region: str,
        credential: Credential,
        authorizer: str | None = None,
    ) -> bytes:
        """Return the DER PKCS#8 private key encrypted in ``ciphertext`` for ``vault_id``.

        ``vault_id`` is the KMS encryption context (decision D10), with ``authorizer``
        (the digest of the API's verified signing key, decision D16) beside it when
        given: a key bound to one authorizer is released for that authorizer only.
        The handler passes ``authorizer`` only when it checks authorizations. Raises
        :class:`KeyDecryptError`.
        """
        ...
