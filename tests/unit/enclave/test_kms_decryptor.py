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
from emulator.aws.sigv4 import Principal, SigV4Verifier
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

    def __init__(self, port: int, proxy: tuple[int, int] = (PARENT_CID, KMS_PROXY_PORT)) -> None:
        self.port = port
        self.proxy = proxy
        #: The timeout of each connection made, in order.
        self.connects: list[float] = []

    def connect(self, cid: int, port: int, timeout: float) -> socket.socket:
        assert (cid, port) == self.proxy
        self.connects.append(timeout)
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
    #: An error answer instead of a Decrypt result: (HTTP status, JSON body).
    error: tuple[int, dict[str, Any]] | None = None
    #: The CiphertextForRecipient to send as is (base64 text) instead of a genuine envelope.
    sealed: str | None = None
    #: Each request's path and headers, as received.
    seen: list[tuple[str, list[tuple[str, str]], bytes]] = field(default_factory=list)
    #: Called while answering (a test's clock advances here).
    during: Any = None

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        time.sleep(self.delay)
        if self.during is not None:
            self.during()
        document = base64.b64decode(request["Recipient"]["AttestationDocument"])
        assert document.startswith(DOCUMENT_PREFIX)
        recipient = load_der_public_key(document[len(DOCUMENT_PREFIX) :])
        assert isinstance(recipient, rsa.RSAPublicKey)
        body: dict[str, Any] = {"KeyId": "arn:aws:kms:us-east-1:123456789012:key/test"}
        if self.sealed is not None:
            body["CiphertextForRecipient"] = self.sealed
        elif "CiphertextForRecipient" in self.answer:
            body["CiphertextForRecipient"] = base64.b64encode(envelope(SEALED_KEY, recipient)).decode()
        if "Plaintext" in self.answer:
            body["Plaintext"] = base64.b64encode(self.plaintext).decode()
        return body


@pytest.fixture
def kms() -> Iterator[tuple[KmsDouble, int]]:
    double = KmsDouble()

    class Handler(BaseHTTPRequestHandler):
        # Keep-alive, as KMS: a cached client's next request reuses its connection.
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            double.seen.append((self.path, list(self.headers.items()), raw))
            status, reply = 200, double.reply(json.loads(raw))
            if double.error is not None:
                status, reply = double.error
            answer = json.dumps(reply).encode()
            self.send_response(status)
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


# -- what each refusal says, what reaches KMS, and what the configuration changes ---------------

KMS_PRINCIPAL = Principal("ASIAENCLAVETEST00001", "s", "arn:aws:iam::123456789012:role/enclave")


def _decryptor(
    port: int, nsm: Any = None, transport: LoopbackTransport | None = None, **config: Any
) -> KmsKeyDecryptor:
    settings: dict[str, Any] = {
        "endpoint": "http://127.0.0.1:{port}",
        "bridge_port": 0,
        "max_attempts": 1,
        "read_timeout": 5.0,
        **config,
    }
    return KmsKeyDecryptor(
        nsm or CountingNsm(),
        transport or LoopbackTransport(port),
        KmsDecryptorConfig(**settings),
        key_factory=lambda: RSA_KEY,
    )


def _refusal(subject: KmsKeyDecryptor, **request: Any) -> tuple[EnclaveErrorCode, str]:
    arguments: dict[str, Any] = {
        "ciphertext": b"vault-key-ciphertext",
        "vault_id": "v_test",
        "region": "us-east-1",
        "credential": CREDENTIAL,
        **request,
    }
    with pytest.raises(KeyDecryptError) as refused:
        subject.decrypt_private_key(**arguments)
    return refused.value.code, str(refused.value)


def test_config_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_KMS_BRIDGE", "localhost:8443")
    monkeypatch.setenv("VAULT_KMS_MAX_ATTEMPTS", "7")
    config = KmsDecryptorConfig.from_env()
    assert (config.bridge_host, config.bridge_port, config.max_attempts) == ("localhost", 8443, 7)


@pytest.mark.parametrize(
    ("bridge", "host", "port"),
    [("::1:8443", "::1", 8443), (":8443", "127.0.0.1", 8443), ("localhost:0", "localhost", 0)],
)
def test_config_splits_the_bridge_at_its_last_colon(bridge: str, host: str, port: int) -> None:
    config = KmsDecryptorConfig.from_env({"VAULT_KMS_BRIDGE": bridge})
    assert (config.bridge_host, config.bridge_port) == (host, port)


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (
            {"__type": "AccessDeniedException", "message": "not the measured image"},
            EnclaveErrorCode.ATTESTATION_FAILED,
            "KMS decrypt failed: AccessDeniedException: not the measured image",
        ),
        (
            {"__type": "InvalidCiphertextException"},
            EnclaveErrorCode.KEY_DECRYPT_FAILED,
            "KMS decrypt failed: InvalidCiphertextException",
        ),
        (
            {"__type": "NotFoundException", "message": ""},
            EnclaveErrorCode.KEY_DECRYPT_FAILED,
            "KMS decrypt failed: NotFoundException",
        ),
    ],
    ids=["access-denied", "no-message", "empty-message"],
)
def test_kms_refusals_keep_kms_code_and_message(
    kms: tuple[KmsDouble, int], error: dict[str, Any], code: EnclaveErrorCode, text: str
) -> None:
    double, port = kms
    double.error = (400, error)
    with _decryptor(port) as subject:
        assert _refusal(subject) == (code, text)


def test_kms_messages_are_cut_at_512_characters(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    prefix = "KMS decrypt failed: NotFoundException: "
    with _decryptor(port) as subject:
        exact = "k" * (512 - len(prefix))
        double.error = (400, {"__type": "NotFoundException", "message": exact})
        assert _refusal(subject)[1] == prefix + exact
        double.error = (400, {"__type": "NotFoundException", "message": exact + "k"})
        cut = _refusal(subject)[1]
        assert cut == (prefix + exact)[:509] + "..."
        assert len(cut) == 512


def test_only_an_attestation_refusal_discards_the_recipient_key(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    nsm = CountingNsm()
    with _decryptor(port, nsm) as subject:
        double.error = (400, {"__type": "InvalidCiphertextException"})
        assert _refusal(subject)[0] is EnclaveErrorCode.KEY_DECRYPT_FAILED
        double.error = None
        assert release(subject) == SEALED_KEY
        assert nsm.documents == 1
        double.error = (400, {"__type": "AccessDeniedException"})
        assert _refusal(subject)[0] is EnclaveErrorCode.ATTESTATION_FAILED
        double.error = None
        assert release(subject) == SEALED_KEY
        assert nsm.documents == 2


@pytest.mark.parametrize(
    ("sealed", "text"),
    [
        ("", "KMS answered without CiphertextForRecipient"),
        (
            base64.b64encode(b"\x30\x03\x02\x01\x00").decode(),
            "cannot open the KMS answer: malformed CMS message: ContentInfo: unexpected tag",
        ),
        (
            base64.b64encode(
                envelope(SEALED_KEY, rsa.generate_private_key(65537, 2048).public_key())
            ).decode(),
            "cannot open the KMS answer: cannot open the enveloped data with the enclave key",
        ),
    ],
    ids=["empty", "not-enveloped-data", "for-another-key"],
)
def test_an_unusable_answer_is_an_attestation_failure_and_discards_the_key(
    kms: tuple[KmsDouble, int], sealed: str, text: str
) -> None:
    double, port = kms
    nsm = CountingNsm()
    with _decryptor(port, nsm) as subject:
        double.sealed = sealed
        assert _refusal(subject) == (EnclaveErrorCode.ATTESTATION_FAILED, text)
        double.sealed = None
        assert release(subject) == SEALED_KEY
        assert nsm.documents == 2


def test_the_plaintext_refusal_names_itself(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    double.answer = {"Plaintext", "CiphertextForRecipient"}
    with _decryptor(port) as subject:
        assert _refusal(subject) == (
            EnclaveErrorCode.ATTESTATION_FAILED,
            "KMS answered an attested request with Plaintext; refusing the key",
        )


class FailingNsm(CountingNsm):
    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        raise NsmError("no NSM device")


def test_an_nsm_failure_is_an_attestation_failure_named_as_such(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    with _decryptor(port, FailingNsm()) as subject:
        assert _refusal(subject) == (
            EnclaveErrorCode.ATTESTATION_FAILED,
            "cannot obtain an attestation document: no NSM device",
        )
    assert double.requests == []


def test_warm_up_logs_an_nsm_failure_by_type_only(
    kms: tuple[KmsDouble, int], caplog: pytest.LogCaptureFixture
) -> None:
    with _decryptor(kms[1], FailingNsm()) as subject, caplog.at_level(logging.WARNING):
        subject.warm_up()
    [record] = [r for r in caplog.records if r.name == "vault.enclave.kms_decryptor"]
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "cannot prepare a recipient key")
    assert getattr(record, "fields", None) == {"error": "NsmError"}


@pytest.mark.parametrize(
    ("request_changes", "text"),
    [
        ({"vault_id": ""}, "vault_id cannot be empty"),
        ({"region": "us-east-1.evil.example/"}, "region contains invalid characters"),
        ({"region": ""}, "region contains invalid characters"),
    ],
)
def test_requests_are_checked_before_kms_is_asked(
    kms: tuple[KmsDouble, int], request_changes: dict[str, Any], text: str
) -> None:
    double, port = kms
    with _decryptor(port) as subject:
        assert _refusal(subject, **request_changes) == (EnclaveErrorCode.INVALID_REQUEST, text)
    assert double.requests == []


def test_the_request_is_signed_with_the_callers_credential_in_its_region(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    verifier = SigV4Verifier([KMS_PRINCIPAL], region="eu-west-2", service="kms")
    with _decryptor(port, endpoint="http://127.0.0.1:{port}/{region}") as subject:
        released = subject.decrypt_private_key(
            ciphertext=b"c",
            vault_id="v_test",
            region="eu-west-2",
            credential=CREDENTIAL,
            authorizer="ab" * 32,
        )
        assert released == SEALED_KEY
        untokened = Credential.model_validate(
            {"AccessKeyId": "ASIAENCLAVETEST00001", "SecretAccessKey": "s", "Token": ""}
        )
        subject.decrypt_private_key(
            ciphertext=b"c", vault_id="v_test", region="eu-west-2", credential=untokened
        )
    assert double.requests[0]["EncryptionContext"] == {"vault_id": "v_test", "authorizer": "ab" * 32}
    assert double.requests[1]["EncryptionContext"] == {"vault_id": "v_test"}
    for (path, headers, body), token in zip(double.seen, ("t", None), strict=True):
        assert path == "/eu-west-2"
        assert verifier.verify("POST", path, "", headers, body) == KMS_PRINCIPAL
        assert dict(headers).get("X-Amz-Security-Token") == token


def test_a_client_is_kept_per_credential_for_the_last_four(kms: tuple[KmsDouble, int]) -> None:
    _, port = kms
    transport = LoopbackTransport(port)

    def credential(n: int) -> Credential:
        return Credential.model_validate(
            {"AccessKeyId": f"ASIAENCLAVETEST0000{n}", "SecretAccessKey": "s", "Token": "t"}
        )

    with _decryptor(port, transport=transport) as subject:

        def connects_for(n: int) -> int:
            before = len(transport.connects)
            subject.decrypt_private_key(
                ciphertext=b"c", vault_id="v_test", region="us-east-1", credential=credential(n)
            )
            return len(transport.connects) - before

        # A new client opens a connection; a kept one reuses its own.
        assert [connects_for(n) for n in (1, 2, 3, 4)] == [1, 1, 1, 1]
        assert [connects_for(n) for n in (1, 4, 2, 3)] == [0, 0, 0, 0]
        assert connects_for(5) == 1  # evicts the least recently used: 1
        assert [connects_for(n) for n in (5, 3, 2, 4)] == [0, 0, 0, 0]
        assert connects_for(1) == 1


def test_the_bridge_and_proxy_settings_are_used(kms: tuple[KmsDouble, int]) -> None:
    double, port = kms
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        bridge_port = probe.getsockname()[1]
    transport = LoopbackTransport(port, proxy=(7, 9000))
    with _decryptor(
        port,
        transport=transport,
        endpoint="http://[::1]:{port}",
        bridge_host="::1",
        bridge_port=bridge_port,
        proxy_cid=7,
        proxy_port=9000,
        connect_timeout=2.5,
    ) as subject:
        assert release(subject) == SEALED_KEY
    assert transport.connects == [2.5]
    assert dict(double.seen[0][1])["Host"] == f"[::1]:{bridge_port}"


def test_recipient_key_bounds_and_factory_come_from_the_config(kms: tuple[KmsDouble, int]) -> None:
    _, port = kms
    made: list[int] = []

    def factory() -> rsa.RSAPrivateKey:
        made.append(1)
        return RSA_KEY

    nsm = CountingNsm()
    config = KmsDecryptorConfig(
        endpoint="http://127.0.0.1:{port}", bridge_port=0, max_attempts=1, key_max_uses=1
    )
    with KmsKeyDecryptor(nsm, LoopbackTransport(port), config, key_factory=factory) as subject:
        release(subject)
        release(subject)
    assert nsm.documents == len(made) == 2
    aged = CountingNsm()
    with _decryptor(port, aged, key_max_age=0.05) as subject:
        release(subject)
        time.sleep(0.1)
        release(subject)
    assert aged.documents >= 2


def test_a_release_is_logged_with_its_outcome_and_duration(
    kms: tuple[KmsDouble, int], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    double, port = kms
    clock = [1000.0]

    def advance() -> None:
        clock[0] += 0.23456

    double.during = advance
    with _decryptor(port) as subject:
        subject.warm_up()
        monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
        with caplog.at_level(logging.INFO):
            release(subject)
    [record] = [r for r in caplog.records if r.getMessage() == "kms key release"]
    assert getattr(record, "fields", None) == {"outcome": "ok", "duration_ms": 234.6}


def test_an_unreachable_kms_is_a_key_decrypt_failure(kms: tuple[KmsDouble, int]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with _decryptor(closed) as subject:
        code, text = _refusal(subject)
    assert code is EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert text.startswith("KMS decrypt failed: ") and len(text) > len("KMS decrypt failed: ")
