"""What the enclave accepts from KMS for a recipient-bound Decrypt.

A KMS double on loopback answers the enclave's real client (botocore → bridge → a
transport double): it reads the recipient key from the request's attestation document
and answers as each test asks. An answer carrying ``Plaintext`` is refused even when its
``CiphertextForRecipient`` is genuine and opens with the enclave's key.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from emulator.aws.kms.cms import envelope
from vault.common.messages import Credential, EnclaveErrorCode
from vault.common.transport import KMS_PROXY_PORT, PARENT_CID, VMADDR_CID_ANY
from vault.enclave.key_decryptor import KeyDecryptError
from vault.enclave.kms_decryptor import KmsDecryptorConfig, KmsKeyDecryptor
from vault.enclave.nsm import NsmError, PcrDescription

DOCUMENT_PREFIX = b"test-attestation:"
#: What the recipient-bound answer seals: the vault's private key, as the enclave should get it.
SEALED_KEY = b"sealed-vault-private-key-" + bytes(range(32))
#: What a KMS that ignores the Recipient sends in the clear.
PLAINTEXT_KEY = b"plaintext-vault-private-key-" + bytes(range(32, 64))
CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": "ASIAENCLAVETEST00001", "SecretAccessKey": "s", "Token": "t"}
)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class CountingNsm:
    """An NSM double whose "document" is the public key behind a prefix; counts documents."""

    def __init__(self) -> None:
        self.documents = 0

    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        assert public_key is not None
        self.documents += 1
        return DOCUMENT_PREFIX + public_key

    def describe_pcr(self, index: int) -> PcrDescription:
        raise NsmError("not supported by this double")


class LoopbackTransport:
    """The vsock-proxy's place taken by a direct TCP connection to the KMS double."""

    def __init__(self, port: int) -> None:
        self.port = port

    def connect(self, cid: int, port: int, timeout: float) -> socket.socket:
        assert (cid, port) == (PARENT_CID, KMS_PROXY_PORT)
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def listen(self, port: int, cid: int = VMADDR_CID_ANY, backlog: int = 128) -> socket.socket:
        raise NotImplementedError("the enclave side only connects")

    def describe(self, cid: int, port: int) -> str:
        return f"loopback:{self.port} for vsock {cid}:{port}"


@dataclass
class KmsDouble:
    """Which members the Decrypt answer carries; the requests it saw."""

    answer: set[str] = field(default_factory=lambda: {"CiphertextForRecipient"})
    plaintext: bytes = PLAINTEXT_KEY
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Seconds to wait before answering (a slow KMS).
    delay: float = 0.0

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        time.sleep(self.delay)
        document = base64.b64decode(request["Recipient"]["AttestationDocument"])
        assert document.startswith(DOCUMENT_PREFIX)
        recipient = load_der_public_key(document[len(DOCUMENT_PREFIX) :])
        assert isinstance(recipient, rsa.RSAPublicKey)
        body: dict[str, Any] = {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/test"}
        if "CiphertextForRecipient" in self.answer:
            body["CiphertextForRecipient"] = base64.b64encode(envelope(SEALED_KEY, recipient)).decode()
        if "Plaintext" in self.answer:
            body["Plaintext"] = base64.b64encode(self.plaintext).decode()
        return body


@pytest.fixture
def kms() -> Iterator[tuple[KmsDouble, int]]:
    double = KmsDouble()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            answer = json.dumps(double.reply(json.loads(self.rfile.read(length)))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield double, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def decryptor(kms: tuple[KmsDouble, int]) -> Iterator[tuple[KmsKeyDecryptor, CountingNsm]]:
    nsm = CountingNsm()
    config = KmsDecryptorConfig(
        endpoint="http://127.0.0.1:{port}", bridge_port=0, max_attempts=1, read_timeout=5.0
    )
    with KmsKeyDecryptor(nsm, LoopbackTransport(kms[1]), config, key_factory=lambda: RSA_KEY) as subject:
        yield subject, nsm


def release(subject: KmsKeyDecryptor) -> bytes:
    return subject.decrypt_private_key(
        ciphertext=b"vault-key-ciphertext", vault_id="v_test", region="us-east-1", credential=CREDENTIAL
    )


def test_a_recipient_bound_answer_releases_the_sealed_key(
    kms: tuple[KmsDouble, int], decryptor: tuple[KmsKeyDecryptor, CountingNsm]
) -> None:
    """The control: the double and the path work, so the refusals below are the decryptor's."""
    double, _ = kms
    subject, _ = decryptor
    assert release(subject) == SEALED_KEY
    [request] = double.requests
    assert request["EncryptionContext"] == {"vault_id": "v_test"}
    assert request["Recipient"]["KeyEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"


@pytest.mark.parametrize(
    ("answer", "plaintext"),
    [
        ({"Plaintext", "CiphertextForRecipient"}, PLAINTEXT_KEY),
        ({"Plaintext", "CiphertextForRecipient"}, SEALED_KEY),
        ({"Plaintext", "CiphertextForRecipient"}, b""),
        ({"Plaintext"}, PLAINTEXT_KEY),
    ],
    ids=["both", "both-same-key", "both-empty-plaintext", "plaintext-only"],
)
def test_an_answer_with_plaintext_is_refused(
    kms: tuple[KmsDouble, int],
    decryptor: tuple[KmsKeyDecryptor, CountingNsm],
    caplog: pytest.LogCaptureFixture,
    answer: set[str],
    plaintext: bytes,
) -> None:
    double, _ = kms
    subject, nsm = decryptor
    double.answer, double.plaintext = answer, plaintext
    released: bytes | None = None
    with caplog.at_level(logging.DEBUG), pytest.raises(KeyDecryptError) as refused:
        released = release(subject)
    assert released is None
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED
    assert "Plaintext" in str(refused.value)
    for secret in (PLAINTEXT_KEY, SEALED_KEY):
        assert secret.hex() not in str(refused.value) and repr(secret) not in str(refused.value)
        assert all(repr(secret) not in record.getMessage() for record in caplog.records)
    outcomes = [getattr(record, "fields", {}).get("outcome") for record in caplog.records]
    assert EnclaveErrorCode.ATTESTATION_FAILED.value in outcomes
    # The recipient key whose answer came back in the clear is not used again.
    assert nsm.documents == 1
    double.answer = {"CiphertextForRecipient"}
    assert release(subject) == SEALED_KEY
    assert nsm.documents == 2


def test_an_answer_without_ciphertext_for_recipient_is_refused(
    kms: tuple[KmsDouble, int], decryptor: tuple[KmsKeyDecryptor, CountingNsm]
) -> None:
    double, _ = kms
    subject, _ = decryptor
    double.answer = set()
    with pytest.raises(KeyDecryptError) as refused:
        release(subject)
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED
    assert "CiphertextForRecipient" in str(refused.value)


def test_a_kms_that_does_not_answer_in_time_is_a_kms_timeout(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    double.delay = 1.0
    config = KmsDecryptorConfig(
        endpoint="http://127.0.0.1:{port}", bridge_port=0, max_attempts=1, read_timeout=0.3
    )
    with KmsKeyDecryptor(
        CountingNsm(), LoopbackTransport(port), config, key_factory=lambda: RSA_KEY
    ) as subject:
        started = time.monotonic()
        with pytest.raises(KeyDecryptError) as refused:
            release(subject)
    assert time.monotonic() - started < 1.0
    assert refused.value.code == EnclaveErrorCode.KMS_TIMEOUT
    assert str(refused.value).startswith("KMS did not answer in time")
