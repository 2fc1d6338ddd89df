"""nsm-kms-python: an enclave application that gets a KMS data key only KMS and the enclave ever see.

For each request from the parent (one JSON line on vsock port 5010: the KMS key, the region
and the instance role's credentials, which only the parent can fetch), it

1. makes a fresh RSA-2048 key pair and asks the Nitro Secure Module, through the
   third-party ``aws-nsm-interface`` package (``/dev/nsm``, ``ioctl``), for an attestation
   document that carries the public key;
2. calls KMS ``GenerateDataKey`` with ``Recipient`` = that document, through a loopback
   relay to the parent's vsock-proxy (an enclave has no network, only vsock), so KMS
   answers ``CiphertextForRecipient`` instead of the plaintext;
3. opens that CMS EnvelopedData with its private key (parsed with ``asn1crypto``);
4. calls ``Decrypt`` of the ``CiphertextBlob`` with the same ``Recipient`` and checks that
   both plaintexts agree;

and answers one JSON line: the data key's SHA-256, the ``CiphertextBlob`` (what the parent
stores), whether the two plaintexts agree and the enclave's PCR0, or the KMS error code.
The data key itself never leaves the enclave.

Configuration (environment): ``KMS_PROXY_PORT`` (the vsock-proxy's port on CID 3, default
8000), ``KMS_BRIDGE`` (the loopback address the relay listens on, default
``127.0.0.1:443``) and ``KMS_ENDPOINT`` (what boto3 calls, default
``https://kms.{region}.amazonaws.com``; ``{port}`` is the relay's port). On Nitro hardware
the defaults apply and the image maps ``kms.<region>.amazonaws.com`` to 127.0.0.1 in
``/etc/hosts``, so TLS runs from boto3 to KMS through the relay and the proxy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

import aws_nsm_interface
import boto3
from asn1crypto import cms
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LISTEN_PORT = 5010
PARENT_CID = 3
MAX_REQUEST = 64 * 1024
KEY_ENCRYPTION_ALGORITHM = "RSAES_OAEP_SHA_256"
CHUNK = 64 * 1024


class EnvelopeError(ValueError):
    """``CiphertextForRecipient`` is not the EnvelopedData KMS sends to this key."""


# -- the road to KMS: loopback TCP -> vsock (CID 3, the vsock-proxy's port) ---------------


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        # Pass the end on, so the other direction can finish too.
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _relay(client: socket.socket, proxy_port: int) -> None:
    with client:
        try:
            upstream = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            upstream.settimeout(30)
            upstream.connect((PARENT_CID, proxy_port))
        except OSError as exc:
            print(f"relay: cannot reach the vsock-proxy: {type(exc).__name__}", flush=True)
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
            back.start()
            _copy(client, upstream)
            back.join()


def start_relay(address: str, proxy_port: int) -> int:
    """Listen on ``address`` (loopback ``host:port``) and relay every connection; the bound port."""
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError("the KMS relay listens on loopback only")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(16)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_relay, args=(client, proxy_port), daemon=True).start()

    threading.Thread(target=accept, name="kms-relay", daemon=True).start()
    return int(listener.getsockname()[1])


# -- CiphertextForRecipient: CMS EnvelopedData (RFC 5652) ------------------------------------


def open_envelope(message: bytes, private_key: rsa.RSAPrivateKey) -> bytes:
    """The content of KMS's EnvelopedData: RSAES-OAEP-SHA-256 key transport, AES-256-CBC content."""
    info = cms.ContentInfo.load(message)
    if info["content_type"].native != "enveloped_data":
        raise EnvelopeError("not EnvelopedData")
    enveloped = info["content"]
    # KMS sends one recipient: the key in the attestation document.
    recipients = [choice.chosen for choice in enveloped["recipient_infos"] if choice.name == "ktri"]
    if len(recipients) != 1:
        raise EnvelopeError("expected one key-transport recipient")
    algorithm = recipients[0]["key_encryption_algorithm"]
    parameters = algorithm["parameters"].native or {}
    if (
        algorithm["algorithm"].native != "rsaes_oaep"
        or parameters.get("hash_algorithm", {}).get("algorithm") != "sha256"
        or parameters.get("mask_gen_algorithm", {}).get("parameters", {}).get("algorithm") != "sha256"
    ):
        raise EnvelopeError("the content key is not wrapped with RSAES-OAEP-SHA-256")
    content_key = private_key.decrypt(
        recipients[0]["encrypted_key"].native,
        OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    content = enveloped["encrypted_content_info"]
    cipher = content["content_encryption_algorithm"]
    if cipher["algorithm"].native != "aes256_cbc" or len(content_key) != 32:
        raise EnvelopeError("the content is not AES-256-CBC")
    decryptor = Cipher(algorithms.AES256(content_key), modes.CBC(cipher["parameters"].native)).decryptor()
    padded = decryptor.update(content["encrypted_content"].native) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


# -- one request -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    key_id: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str

    @classmethod
    def parse(cls, line: bytes) -> Request:
        data = json.loads(line)
        credentials = data["credentials"]
        return cls(
            key_id=str(data["key_id"]),
            region=str(data["region"]),
            access_key_id=str(credentials["access_key_id"]),
            secret_access_key=str(credentials["secret_access_key"]),
            session_token=str(credentials.get("session_token", "")),
        )


class Enclave:
    def __init__(self, relay_port: int) -> None:
        self.relay_port = relay_port
        self.endpoint = os.environ.get("KMS_ENDPOINT", "https://kms.{region}.amazonaws.com")
        self.nsm = aws_nsm_interface.open_nsm_device()

    def kms(self, request: Request) -> Any:
        return boto3.session.Session().client(
            "kms",
            region_name=request.region,
            endpoint_url=self.endpoint.format(region=request.region, port=self.relay_port),
            aws_access_key_id=request.access_key_id,
            aws_secret_access_key=request.secret_access_key,
            aws_session_token=request.session_token or None,
            config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
        )

    def handle(self, request: Request) -> dict[str, Any]:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_key = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        document = aws_nsm_interface.get_attestation_doc(self.nsm, public_key=public_key)["document"]
        pcr0 = aws_nsm_interface.describe_pcr(self.nsm, 0)["data"].hex()
        recipient = {"AttestationDocument": document, "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM}
        kms = self.kms(request)
        operation = "GenerateDataKey"
        try:
            generated = kms.generate_data_key(KeyId=request.key_id, KeySpec="AES_256", Recipient=recipient)
            if generated.get("Plaintext"):
                # With a Recipient KMS must not send the key in the clear; refuse to go on if it did.
                return {"error": {"code": "PlaintextReturned", "operation": operation}, "pcr0": pcr0}
            data_key = open_envelope(generated["CiphertextForRecipient"], private_key)
            operation = "Decrypt"
            decrypted = kms.decrypt(
                CiphertextBlob=generated["CiphertextBlob"], KeyId=request.key_id, Recipient=recipient
            )
            again = open_envelope(decrypted["CiphertextForRecipient"], private_key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            print(f"{operation}: refused by KMS: {code}", flush=True)
            return {"error": {"code": code, "operation": operation}, "pcr0": pcr0}
        digest = hashlib.sha256(data_key).hexdigest()
        matches = hmac.compare_digest(data_key, again)
        print(f"data key sha256 {digest}; Decrypt gives the same key: {matches}", flush=True)
        return {
            "key_id": generated["KeyId"],
            "data_key_sha256": digest,
            "decrypt_matches": matches,
            "ciphertext_blob": base64.b64encode(generated["CiphertextBlob"]).decode(),
            "pcr0": pcr0,
        }


def read_line(connection: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def serve(enclave: Enclave, listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(60)
            reply: dict[str, Any]
            try:
                request = Request.parse(read_line(connection))
            except (OSError, ValueError, KeyError, TypeError):
                request, reply = None, {"error": {"code": "BadRequest"}}
            if request is not None:
                try:
                    reply = enclave.handle(request)
                except (
                    ValueError,
                    KeyError,
                    TypeError,
                    BotoCoreError,
                    OSError,
                    aws_nsm_interface.IoctlError,
                ) as exc:
                    # The type only: an exception's text may quote what it failed on.
                    print(f"request failed: {type(exc).__name__}", flush=True)
                    reply = {"error": {"code": type(exc).__name__}}
            try:
                connection.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                continue


def main() -> int:
    relay_port = start_relay(
        os.environ.get("KMS_BRIDGE", "127.0.0.1:443"), int(os.environ.get("KMS_PROXY_PORT", "8000"))
    )
    enclave = Enclave(relay_port)
    listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    listener.bind((socket.VMADDR_CID_ANY, LISTEN_PORT))
    listener.listen(8)
    print(
        f"listening on vsock port {LISTEN_PORT}; KMS through vsock port {PARENT_CID}:"
        f"{os.environ.get('KMS_PROXY_PORT', '8000')}",
        flush=True,
    )
    serve(enclave, listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
