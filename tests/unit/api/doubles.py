"""Test doubles for the API's tests: KMS key pairs on moto, a KMS key decryptor, a parent.

* :class:`MotoKmsWithDataKeyPairs` adds ``GenerateDataKeyPairWithoutPlaintext`` to a
  moto KMS client (moto does not implement it): a real P-384 key pair whose DER PKCS#8
  private key is encrypted with moto's ``Encrypt`` under the given encryption context,
  so that moto's ``Decrypt`` opens it only with the same context.
* :class:`KmsContextKeyDecryptor` is the enclave's key path reduced to KMS ``Decrypt``
  with the vault id (and the authorizer digest, when the handler passes one) as
  encryption context (no attestation).
* :class:`ParentAdapter` is a ``requests`` transport adapter standing in for the parent
  at ``https://parent.test``: nothing leaves the process. :func:`enclave_parent`
  answers with the project's enclave request handler; :func:`canned` with a fixed reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from requests.adapters import BaseAdapter

from tests.support.enclave_keys import TEST_CREDENTIAL
from vault.common.authorization import AUTHORIZER_CONTEXT_KEY
from vault.common.messages import (
    BatchDecryptRequest,
    Credential,
    DecryptRequest,
    EnclaveBatchRequest,
    EnclaveRequest,
)
from vault.enclave.batch import BatchHandler
from vault.enclave.handler import RequestHandler
from vault.enclave.key_decryptor import KeyDecryptError
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY, KEY_PAIR_SPEC

PARENT_URL = "https://parent.test"


class MotoKmsWithDataKeyPairs:
    """A moto KMS client plus ``generate_data_key_pair_without_plaintext``; records each call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.key_pair_calls: list[dict[str, Any]] = []
        #: When set, key pair generation raises this AWS error code instead.
        self.failure: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def generate_data_key_pair_without_plaintext(self, **kwargs: Any) -> dict[str, Any]:
        self.key_pair_calls.append(kwargs)
        if self.failure is not None:
            error = {"Error": {"Code": self.failure, "Message": "refused by the test"}}
            raise ClientError(error, "GenerateDataKeyPairWithoutPlaintext")
        if kwargs.get("KeyPairSpec") != KEY_PAIR_SPEC:
            raise ValueError(f"this double only makes {KEY_PAIR_SPEC} key pairs")
        private = ec.generate_private_key(ec.SECP384R1())
        der = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        encrypted = self._client.encrypt(
            KeyId=kwargs["KeyId"], Plaintext=der, EncryptionContext=kwargs.get("EncryptionContext", {})
        )
        return {
            "KeyId": encrypted["KeyId"],
            "KeyPairSpec": KEY_PAIR_SPEC,
            "PublicKey": private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
            "PrivateKeyCiphertextBlob": encrypted["CiphertextBlob"],
        }


class KmsContextKeyDecryptor:
    """``KeyDecryptor`` over plain KMS ``Decrypt`` with the vault id as encryption context."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def decrypt_private_key(
        self,
        *,
        ciphertext: bytes,
        vault_id: str,
        region: str,
        credential: Credential,
        authorizer: str | None = None,
    ) -> bytes:
        context = {ENCRYPTION_CONTEXT_KEY: vault_id}
        if authorizer is not None:
            context[AUTHORIZER_CONTEXT_KEY] = authorizer
        try:
            reply = self._client.decrypt(CiphertextBlob=ciphertext, EncryptionContext=context)
        except ClientError as exc:
            raise KeyDecryptError(exc.response["Error"]["Code"]) from None
        return bytes(reply["Plaintext"])


#: What a responder returns: (status, JSON body or raw bytes), or an exception to raise.
Reply = tuple[int, Any] | Exception
Responder = Callable[[dict[str, Any]], Reply]


@dataclass
class SentRequest:
    url: str
    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    timeout: Any
    verify: Any


@dataclass
class ParentAdapter(BaseAdapter):
    responder: Responder
    sent: list[SentRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = json.loads(request.body or b"null")
        self.sent.append(
            SentRequest(
                url=str(request.url),
                method=str(request.method),
                body=body,
                headers=dict(request.headers),
                timeout=kwargs.get("timeout"),
                verify=kwargs.get("verify"),
            )
        )
        reply = self.responder(body)
        if isinstance(reply, Exception):
            raise reply
        status, payload = reply
        response = requests.Response()
        response.status_code = status
        response._content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        response.headers["Content-Type"] = "application/json"
        if 300 <= status < 400:
            response.headers["Location"] = f"{PARENT_URL}/elsewhere"
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def enclave_parent(handler: RequestHandler, credential: Credential = TEST_CREDENTIAL) -> Responder:
    """The parent's success path: wrap the request with credentials, hand it to the enclave.

    A batch (``POST /decrypt/batch``, ``{"requests": [...]}``) goes through the enclave's
    batch handler, each entry on its own, and is answered ``{"replies": [...]}``.
    """

    def respond(body: dict[str, Any]) -> Reply:
        if isinstance(body, dict) and "requests" in body:
            batch = BatchDecryptRequest.model_validate(body)
            document = EnclaveBatchRequest(credential=credential, batch=batch.requests).to_wire()
            return 200, BatchHandler(handler).handle_document(document).to_wire()
        request = EnclaveRequest(credential=credential, request=DecryptRequest.model_validate(body))
        return 200, handler.handle_request(request).to_wire()

    return respond


def canned(status: int, payload: Any) -> Responder:
    return lambda body: (status, payload)


def raising(exc: Exception) -> Responder:
    return lambda body: exc


def session_for(adapter: ParentAdapter) -> requests.Session:
    session = requests.Session()
    session.mount(PARENT_URL, adapter)
    return session
