"""KMS ``Decrypt`` with a Recipient attestation document: the enclave's key release.

For each request the enclave calls KMS itself, SigV4-signed with the credentials the
parent passed in that request (never anything from the environment) and in that
request's region::

    Decrypt(CiphertextBlob, EncryptionContext={"vault_id": <vault id>},
            Recipient={AttestationDocument: <document with our RSA key>,
                       KeyEncryptionAlgorithm: RSAES_OAEP_SHA_256})

and opens ``CiphertextForRecipient`` (:mod:`vault.enclave.cms`) with the private key
that only this process holds (:mod:`vault.enclave.recipient_keys`). KMS is reached
through :class:`~vault.enclave.kms_bridge.KmsBridge`.

An answer that carries ``Plaintext`` is refused, whatever else it carries: KMS never
sends one when a Recipient was given, so it means something between the enclave and
KMS ignored the attestation (moto and LocalStack both do) and the key crossed the
parent in the clear. A ``CiphertextForRecipient`` beside it does not make it usable.

Error codes (:class:`~vault.common.messages.EnclaveErrorCode`):

* ``AttestationFailed`` -- KMS refused with ``AccessDeniedException``; the NSM gave no
  document; the answer carried ``Plaintext`` or lacked ``CiphertextForRecipient``; the
  answer could not be opened with the attested key. ``AccessDenied`` maps here because
  the decrypt statement of the key policy is fixed at deploy time except for its PCR
  conditions, so a refusal to a deployed enclave almost always means the running image
  is not the measured one (KMS does not say which condition failed; its message is
  kept in the error text).
* ``KeyDecryptFailed`` -- everything else: wrong ciphertext or encryption context
  (``InvalidCiphertextException``), unknown or disabled key, throttling after retries,
  unrecognised credentials, KMS unreachable or timing out.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from cryptography.hazmat.primitives.asymmetric import rsa

from vault.common.authorization import AUTHORIZER_CONTEXT_KEY
from vault.common.messages import Credential, EnclaveErrorCode
from vault.common.transport import KMS_PROXY_PORT, PARENT_CID, TransportConfig, VsockTransport
from vault.enclave.cms import CmsError, open_enveloped_data
from vault.enclave.key_decryptor import KeyDecryptError
from vault.enclave.kms_bridge import KmsBridge
from vault.enclave.nsm import Nsm, NsmError, nsm_from_env
from vault.enclave.recipient_keys import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_USES,
    RecipientKey,
    RecipientKeys,
    generate_key,
)
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY

KEY_ENCRYPTION_ALGORITHM: Final = "RSAES_OAEP_SHA_256"
DEFAULT_ENDPOINT = "https://kms.{region}.amazonaws.com"
_REGION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
#: KMS messages name principal and key ARNs; longer ones (never expected) are cut.
_MAX_ERROR_TEXT = 512
MAX_CACHED_CLIENTS = 4
_log = logging.getLogger(__name__)
# botocore sessions cache service models (loading KMS's costs ~100 ms); creating clients
# from one is cheap but not thread-safe, hence the lock.
_SESSION = botocore.session.Session()
_SESSION_LOCK = threading.Lock()


@dataclass(frozen=True)
class KmsDecryptorConfig:
    """How the enclave reaches KMS. Environment names in :meth:`from_env`."""

    #: boto3's endpoint; ``{region}`` and ``{port}`` (the bridge's port) are filled in.
    endpoint: str = DEFAULT_ENDPOINT
    bridge_host: str = "127.0.0.1"
    #: 443 in production; 0 picks a free port (the emulator).
    bridge_port: int = 443
    proxy_cid: int = PARENT_CID
    proxy_port: int = KMS_PROXY_PORT
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: botocore "standard" retries (throttling, transient errors), first attempt included.
    max_attempts: int = 3
    key_max_age: float = DEFAULT_MAX_AGE
    key_max_uses: int = DEFAULT_MAX_USES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KmsDecryptorConfig:
        """``VAULT_KMS_ENDPOINT``, ``VAULT_KMS_BRIDGE`` (host:port), ``VAULT_KMS_PROXY_PORT``,
        ``VAULT_KMS_TIMEOUT``, ``VAULT_KMS_MAX_ATTEMPTS``, ``VAULT_KMS_KEY_MAX_AGE``,
        ``VAULT_KMS_KEY_MAX_USES``."""
        env = os.environ if environ is None else environ
        default = cls()
        host, _, port = env.get(
            "VAULT_KMS_BRIDGE", f"{default.bridge_host}:{default.bridge_port}"
        ).rpartition(":")
        timeout = float(env.get("VAULT_KMS_TIMEOUT", str(default.read_timeout)))
        return cls(
            endpoint=env.get("VAULT_KMS_ENDPOINT", default.endpoint),
            bridge_host=host or default.bridge_host,
            bridge_port=int(port),
            proxy_port=int(env.get("VAULT_KMS_PROXY_PORT", str(default.proxy_port))),
            connect_timeout=min(timeout, default.connect_timeout),
            read_timeout=timeout,
            max_attempts=int(env.get("VAULT_KMS_MAX_ATTEMPTS", str(default.max_attempts))),
            key_max_age=float(env.get("VAULT_KMS_KEY_MAX_AGE", str(default.key_max_age))),
            key_max_uses=int(env.get("VAULT_KMS_KEY_MAX_USES", str(default.key_max_uses))),
        )


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."


def _client_error(exc: ClientError) -> KeyDecryptError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    detail = str(error.get("Message") or "")
    message = _short(f"KMS decrypt failed: {code}: {detail}" if detail else f"KMS decrypt failed: {code}")
    if code == "AccessDeniedException":
        return KeyDecryptError(message, EnclaveErrorCode.ATTESTATION_FAILED)
    return KeyDecryptError(message, EnclaveErrorCode.KEY_DECRYPT_FAILED)


class KmsKeyDecryptor:
    """:class:`~vault.enclave.key_decryptor.KeyDecryptor` backed by attested KMS ``Decrypt``."""

    def __init__(
        self,
        nsm: Nsm,
        transport: VsockTransport,
        config: KmsDecryptorConfig | None = None,
        *,
        key_factory: Callable[[], rsa.RSAPrivateKey] = generate_key,
    ) -> None:
        self.config = config or KmsDecryptorConfig()
        self._keys = RecipientKeys(
            nsm,
            max_age=self.config.key_max_age,
            max_uses=self.config.key_max_uses,
            key_factory=key_factory,
        )
        self._bridge = KmsBridge(
            transport,
            host=self.config.bridge_host,
            port=self.config.bridge_port,
            proxy_cid=self.config.proxy_cid,
            proxy_port=self.config.proxy_port,
            connect_timeout=self.config.connect_timeout,
        )
        self._clients: OrderedDict[tuple[str, str, str, str], Any] = OrderedDict()
        self._client_config = Config(
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            retries={"total_max_attempts": self.config.max_attempts, "mode": "standard"},
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KmsKeyDecryptor:
        """Configured by ``VAULT_NSM``, the ``VAULT_VSOCK_*`` transport and ``VAULT_KMS_*``."""
        transport = TransportConfig.from_env(environ).create()
        return cls(nsm_from_env(environ), transport, KmsDecryptorConfig.from_env(environ))

    def close(self) -> None:
        with _SESSION_LOCK:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self._bridge.close()
        self._keys.clear()

    def warm_up(self) -> None:
        """Do the one-time work before the first request needs it.

        Without this the first decrypt after a (re)start pays for the bridge, botocore's
        KMS service model and an RSA-2048 key with an attestation document -- together
        long enough on a busy machine to overrun the parent's read timeout.
        """
        self._bridge.start()
        with _SESSION_LOCK:
            _SESSION.get_service_model("kms")
        try:
            self._keys.prepare()
        except NsmError as exc:
            # Not fatal here: the first request retries and reports the failure with its code.
            _log.warning("cannot prepare a recipient key", extra={"fields": {"error": type(exc).__name__}})

    def __enter__(self) -> KmsKeyDecryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _client(self, region: str, credential: Credential) -> Any:
        """A client signing with ``credential`` in ``region``.

        Clients are kept for the last few (region, credential) pairs so that their pooled
        connections -- in production a TLS session through the vsock-proxy -- serve the next
        request instead of a new handshake each time. Instance credentials change about
        hourly, so the cache holds at most a few entries; a new pair evicts the oldest.
        """
        token = credential.token.get_secret_value()
        identity = (
            region,
            credential.access_key_id.get_secret_value(),
            credential.secret_access_key.get_secret_value(),
            token,
        )
        with _SESSION_LOCK:
            client = self._clients.get(identity)
            if client is not None:
                self._clients.move_to_end(identity)
                return client
            port = self._bridge.start()  # on first use; later calls return its port
            client = _SESSION.create_client(
                "kms",
                region_name=region,
                endpoint_url=self.config.endpoint.format(region=region, port=port),
                aws_access_key_id=identity[1],
                aws_secret_access_key=identity[2],
                aws_session_token=token or None,
                config=self._client_config,
            )
            self._clients[identity] = client
            while len(self._clients) > MAX_CACHED_CLIENTS:
                # Dropped, not closed: another thread may still be using it; its
                # connections close when the last reference goes.
                self._clients.popitem(last=False)
            return client

    def decrypt_private_key(
        self,
        *,
        ciphertext: bytes,
        vault_id: str,
        region: str,
        credential: Credential,
        authorizer: str | None = None,
    ) -> bytes:
        if not vault_id:
            raise KeyDecryptError("vault_id cannot be empty", EnclaveErrorCode.INVALID_REQUEST)
        if not _REGION.match(region):
            # The region becomes part of the endpoint URL: nothing but a region name gets there.
            raise KeyDecryptError("region contains invalid characters", EnclaveErrorCode.INVALID_REQUEST)
        started = time.perf_counter()
        code: EnclaveErrorCode | None = None
        try:
            context = {ENCRYPTION_CONTEXT_KEY: vault_id}
            if authorizer is not None:
                context[AUTHORIZER_CONTEXT_KEY] = authorizer
            return self._release(ciphertext, context, region, credential)
        except KeyDecryptError as exc:
            code = exc.code
            raise
        finally:
            _log.info(
                "kms key release",
                extra={
                    "fields": {
                        "outcome": "ok" if code is None else code.value,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )

    def _release(
        self, ciphertext: bytes, context: Mapping[str, str], region: str, credential: Credential
    ) -> bytes:
        try:
            key = self._keys.acquire()
        except NsmError as exc:
            raise KeyDecryptError(
                f"cannot obtain an attestation document: {exc}", EnclaveErrorCode.ATTESTATION_FAILED
            ) from None
        response = self._call_kms(key, ciphertext, context, region, credential)
        # Checked first and on presence alone (an empty value included): an answer with
        # Plaintext is refused even when it also carries a CiphertextForRecipient that opens.
        if "Plaintext" in response:
            self._keys.discard(key)
            raise KeyDecryptError(
                "KMS answered an attested request with Plaintext; refusing the key",
                EnclaveErrorCode.ATTESTATION_FAILED,
            )
        sealed = response.get("CiphertextForRecipient")
        if not isinstance(sealed, bytes) or not sealed:
            self._keys.discard(key)
            raise KeyDecryptError(
                "KMS answered without CiphertextForRecipient", EnclaveErrorCode.ATTESTATION_FAILED
            )
        try:
            return open_enveloped_data(sealed, key.private_key)
        except CmsError as exc:
            self._keys.discard(key)
            raise KeyDecryptError(
                f"cannot open the KMS answer: {exc}", EnclaveErrorCode.ATTESTATION_FAILED
            ) from None

    def _call_kms(
        self,
        key: RecipientKey,
        ciphertext: bytes,
        context: Mapping[str, str],
        region: str,
        credential: Credential,
    ) -> Mapping[str, Any]:
        client = self._client(region, credential)
        try:
            response: Mapping[str, Any] = client.decrypt(
                CiphertextBlob=ciphertext,
                EncryptionContext=dict(context),
                Recipient={
                    "AttestationDocument": key.document,
                    "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
                },
            )
            return response
        except ClientError as exc:
            error = _client_error(exc)
            if error.code == EnclaveErrorCode.ATTESTATION_FAILED:
                self._keys.discard(key)
            raise error from None
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            # A slow KMS is not a refusal: its own code lets the API say "retry later" truthfully.
            raise KeyDecryptError(
                _short(f"KMS did not answer in time: {exc}"), EnclaveErrorCode.KMS_TIMEOUT
            ) from None
        except BotoCoreError as exc:
            # Connection and timeout errors; their text names the endpoint, never secrets.
            raise KeyDecryptError(
                _short(f"KMS decrypt failed: {exc}"), EnclaveErrorCode.KEY_DECRYPT_FAILED
            ) from None
