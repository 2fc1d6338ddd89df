"""The enclave's key release end to end: KmsKeyDecryptor → bridge → vsock-proxy → front → moto."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key

from emulator.daemon.config import EmulatorConfig
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.cose import decode_sign1
from emulator.nitro.nsm import enclave_pcrs
from emulator.nitro.pki import TestPki
from emulator.nitro.vsock_proxy import VsockProxy, VsockProxyError
from emulator.tools.cli import build_parser, config_from_args
from vault.common import hpke
from vault.common.messages import Credential, EnclaveErrorCode
from vault.common.suites import P384_SHA384_AES256GCM
from vault.common.transport import PARENT_CID, UnixSocketTransport
from vault.enclave.key_decryptor import KeyDecryptError, KeyDecryptor
from vault.enclave.kms_bridge import KmsBridge
from vault.enclave.kms_decryptor import KmsDecryptorConfig, KmsKeyDecryptor
from vault.enclave.nsm import NsmError, PcrDescription
from vault.enclave.recipient_keys import RecipientKeys
from vault.infra.key_policy import EnclaveMeasurements

from .conftest import INSTANCE_CREDENTIAL, INSTANCE_ROLE, MEASUREMENTS, PCR3, Harness

INSTANCE_ID = "i-0e1a2b3c4d5e6f708"
EMULATOR_CONFIG = KmsDecryptorConfig(endpoint="http://127.0.0.1:{port}", bridge_port=0)


def release(
    decryptor: KeyDecryptor, blob: bytes, vault_id: str, credential: Credential = INSTANCE_CREDENTIAL
) -> bytes:
    return decryptor.decrypt_private_key(
        ciphertext=blob, vault_id=vault_id, region="us-east-1", credential=credential
    )


def test_full_path_releases_the_key_that_opens_hpke_fields(harness: Harness) -> None:
    vault_id = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
    pair = harness.new_vault_key(vault_id)
    fields = {"first_name": "Bob", "ssn9": "123-45-6789"}
    sealed = {
        name: hpke.seal(
            P384_SHA384_AES256GCM, pair["PublicKey"], vault_id.encode(), name.encode(), value.encode()
        )
        for name, value in fields.items()
    }
    nsm_socket = harness.register("enc-full")
    with KmsKeyDecryptor.from_env(harness.enclave_env(nsm_socket)) as decryptor:
        der = release(decryptor, pair["PrivateKeyCiphertextBlob"], vault_id)
    private_key = load_der_private_key(der, None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    recipient = hpke.Recipient(P384_SHA384_AES256GCM, private_key)
    opened = {
        name: recipient.open(enc, ct, vault_id.encode(), name.encode()).decode()
        for name, (enc, ct) in sealed.items()
    }
    assert opened == fields


def test_the_encryption_context_binds_the_vault(harness: Harness) -> None:
    pair = harness.new_vault_key("v_one")
    with KmsKeyDecryptor.from_env(harness.enclave_env(harness.register("enc-ctx"))) as decryptor:
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_two")
    assert refused.value.code == EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert "InvalidCiphertextException" in str(refused.value)


def test_debug_mode_enclaves_are_refused(harness: Harness) -> None:
    pair = harness.new_vault_key("v_debug")
    env = harness.enclave_env(harness.register("enc-debug", debug_mode=True))
    with KmsKeyDecryptor.from_env(env) as decryptor:
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_debug")
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED
    assert "AccessDeniedException" in str(refused.value)


def test_up_debug_mode_reaches_the_emulator_config(tmp_path: Path) -> None:
    parser = build_parser()
    debug = config_from_args(parser.parse_args(["up", "--state-dir", str(tmp_path), "--debug-mode"]))
    assert debug.debug_mode and EmulatorConfig.from_json(debug.to_json()).debug_mode
    assert not config_from_args(parser.parse_args(["up", "--state-dir", str(tmp_path)])).debug_mode


class CraftedNsm:
    """An NSM double signing whatever document a test describes (a compromised or foreign NSM)."""

    def __init__(self, make: Callable[[bytes | None], bytes]) -> None:
        self.make = make

    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        return self.make(public_key)

    def describe_pcr(self, index: int) -> PcrDescription:
        raise NsmError("not supported by this double")


def document_factory(
    pki: TestPki,
    *,
    pcrs: dict[int, bytes] | None = None,
    not_after: dt.datetime | None = None,
    tamper: bool = False,
) -> Callable[[bytes | None], bytes]:
    def make(public_key: bytes | None) -> bytes:
        now = dt.datetime.now(dt.UTC)
        leaf = pki.issue_leaf(
            f"{INSTANCE_ID}-enc1",
            not_before=now - dt.timedelta(hours=4) if not_after else None,
            not_after=not_after,
        )
        good_pcrs = enclave_pcrs(MEASUREMENTS, PCR3, instance_id=INSTANCE_ID, debug_mode=False)
        document = AttestationDocument(
            module_id=f"{INSTANCE_ID}-enc1",
            timestamp_ms=int(time.time() * 1000),
            pcrs=good_pcrs if pcrs is None else pcrs,
            certificate=leaf.der,
            cabundle=tuple(pki.cabundle),
            public_key=public_key,
        )
        signed = document.sign(leaf.key)
        if not tamper:
            return signed
        envelope = decode_sign1(signed)
        payload = cbor2.loads(envelope.payload)
        # A change the policy does not look at: only the signature can catch it.
        payload["module_id"] += "-forged"
        return cbor2.dumps([envelope.protected, {}, cbor2.dumps(payload), envelope.signature])

    return make


def _other_image() -> dict[int, bytes]:
    other = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48, pcr8=MEASUREMENTS.pcr8)
    return enclave_pcrs(other, PCR3, instance_id=INSTANCE_ID, debug_mode=False)


def _without_pcr1() -> dict[int, bytes]:
    pcrs = enclave_pcrs(MEASUREMENTS, PCR3, instance_id=INSTANCE_ID, debug_mode=False)
    del pcrs[1]
    return pcrs


@pytest.mark.parametrize(
    ("case", "front_reason"),
    [
        ("wrong-root", "(chain)"),
        ("tampered-payload", "(signature)"),
        ("expired-certificate", "(chain)"),
        ("missing-pcr", "because no resource-based policy allows the kms:Decrypt action"),
        ("other-image", "because no resource-based policy allows the kms:Decrypt action"),
        ("other-role", "because no resource-based policy allows the kms:Decrypt action"),
    ],
)
def test_bad_documents_are_refused_and_reported_as_attestation_failures(
    harness: Harness,
    pki: TestPki,
    other_pki: TestPki,
    rsa_key: rsa.RSAPrivateKey,
    case: str,
    front_reason: str,
) -> None:
    factories = {
        "wrong-root": lambda: document_factory(other_pki),
        "tampered-payload": lambda: document_factory(pki, tamper=True),
        "expired-certificate": lambda: document_factory(
            pki, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        ),
        "missing-pcr": lambda: document_factory(pki, pcrs=_without_pcr1()),
        "other-image": lambda: document_factory(pki, pcrs=_other_image()),
        "other-role": lambda: document_factory(
            pki,
            pcrs={
                **enclave_pcrs(MEASUREMENTS, PCR3, instance_id=INSTANCE_ID, debug_mode=False),
                3: bytes(48),
            },
        ),
    }
    pair = harness.new_vault_key(f"v_{case}")
    transport = UnixSocketTransport(harness.stack.vsock_dir, 16)
    decryptor = KmsKeyDecryptor(
        CraftedNsm(factories[case]()), transport, EMULATOR_CONFIG, key_factory=lambda: rsa_key
    )
    with decryptor, pytest.raises(KeyDecryptError) as refused:
        release(decryptor, pair["PrivateKeyCiphertextBlob"], f"v_{case}")
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED
    assert "AccessDeniedException" in str(refused.value)
    assert front_reason in str(refused.value)  # KMS's own text is kept


def test_a_plaintext_answer_is_refused(harness: Harness, moto_url: str, short_dir: Path) -> None:
    """moto answers a Recipient with Plaintext; without the front in between, the enclave must refuse."""
    pair = harness.new_vault_key("v_plaintext")
    vsock_dir = short_dir / "direct"
    port = int(moto_url.rsplit(":", 1)[1])
    with VsockProxy.over_uds(vsock_dir, ("127.0.0.1", port)):
        env = {**harness.enclave_env(harness.register("enc-direct")), "VAULT_VSOCK_UDS_DIR": str(vsock_dir)}
        with KmsKeyDecryptor.from_env(env) as decryptor:
            with pytest.raises(KeyDecryptError) as refused:
                release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_plaintext")
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED
    assert "Plaintext" in str(refused.value)


def test_credentials_come_from_the_request_not_the_environment(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = harness.new_vault_key("v_creds")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", INSTANCE_CREDENTIAL.access_key_id.get_secret_value())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "instance-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    stranger = Credential.model_validate({"AccessKeyId": "ASIASTRANGER00000001", "SecretAccessKey": "s"})
    with KmsKeyDecryptor.from_env(harness.enclave_env(harness.register("enc-creds"))) as decryptor:
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_creds", stranger)
        assert refused.value.code == EnclaveErrorCode.KEY_DECRYPT_FAILED
        assert "UnrecognizedClientException" in str(refused.value)
        assert release(
            decryptor, pair["PrivateKeyCiphertextBlob"], "v_creds"
        )  # the request's own credentials


def test_throttling_is_retried_then_reported(harness: Harness) -> None:
    pair = harness.new_vault_key("v_throttle")
    env = {**harness.enclave_env(harness.register("enc-throttle")), "VAULT_KMS_MAX_ATTEMPTS": "2"}
    faults = harness.stack.front.faults
    with KmsKeyDecryptor.from_env(env) as decryptor:
        faults.throttle(1, operation="Decrypt")
        assert release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_throttle")
        faults.throttle(2, operation="Decrypt")
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_throttle")
    assert refused.value.code == EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert "ThrottlingException" in str(refused.value)


def test_unreachable_kms_and_bad_requests(harness: Harness, short_dir: Path) -> None:
    env = {
        **harness.enclave_env(harness.register("enc-unreachable")),
        "VAULT_VSOCK_UDS_DIR": str(short_dir / "none"),
    }
    with KmsKeyDecryptor.from_env({**env, "VAULT_KMS_MAX_ATTEMPTS": "1"}) as decryptor:
        with pytest.raises(KeyDecryptError) as unreachable:
            release(decryptor, b"blob", "v_x")
        assert unreachable.value.code == EnclaveErrorCode.KEY_DECRYPT_FAILED
        for region in ("", "us-east-1/../x", "us_east_1", "a" * 65, "us-east-1.evil.example"):
            with pytest.raises(KeyDecryptError) as bad:
                decryptor.decrypt_private_key(
                    ciphertext=b"x", vault_id="v", region=region, credential=INSTANCE_CREDENTIAL
                )
            assert bad.value.code == EnclaveErrorCode.INVALID_REQUEST
        with pytest.raises(KeyDecryptError) as no_vault:
            release(decryptor, b"x", "")
        assert no_vault.value.code == EnclaveErrorCode.INVALID_REQUEST


def test_no_secrets_in_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    pair = harness.new_vault_key("v_logs")
    caplog.set_level(logging.DEBUG)
    with KmsKeyDecryptor.from_env(harness.enclave_env(harness.register("enc-logs"))) as decryptor:
        der = release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_logs")
        keys_repr = repr(decryptor._keys.acquire())
    # Our own loggers (botocore's DEBUG output is held at WARNING by vault.common.logs).
    ours = [r for r in caplog.records if r.name.startswith(("vault", "emulator"))]
    text = "\n".join(r.getMessage() + repr(r.__dict__.get("fields")) for r in ours)
    assert "kms key release" in text
    secrets = ("instance-secret", "instance-token", der.hex(), base64.b64encode(der).decode(), "BEGIN")
    for secret in secrets:
        assert secret not in text
    assert "private_key" not in keys_repr and "document" not in keys_repr
    assert "instance-secret" not in repr(INSTANCE_CREDENTIAL)


# -- recipient keys: reuse within bounds --------------------------------------------------------


class CountingNsm:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        self.calls += 1
        if self.fail:
            raise NsmError("no NSM here")
        return b"document-%d" % self.calls

    def describe_pcr(self, index: int) -> PcrDescription:
        return PcrDescription(index, True, bytes(48))


@pytest.fixture
def fast_keys(rsa_key: rsa.RSAPrivateKey) -> Iterator[Callable[..., RecipientKeys]]:
    clock = [0.0]

    def build(nsm: CountingNsm, **bounds: Any) -> RecipientKeys:
        bounds.setdefault("renew", None)
        keys = RecipientKeys(nsm, clock=lambda: clock[0], key_factory=lambda: rsa_key, **bounds)
        keys.clock = clock  # type: ignore[attr-defined]
        return keys

    yield build


def test_keys_are_reused_within_their_bounds(fast_keys: Callable[..., RecipientKeys]) -> None:
    nsm = CountingNsm()
    keys = fast_keys(nsm, max_age=60.0, max_uses=3)
    first = keys.acquire()
    assert keys.acquire() is first and keys.acquire() is first and nsm.calls == 1
    fourth = keys.acquire()  # a fourth use needs a new key and document
    assert fourth is not first and nsm.calls == 2 and fourth.document == b"document-2"
    keys.clock[0] += 60.0  # type: ignore[attr-defined]
    assert keys.acquire() is not fourth and nsm.calls == 3
    current = keys.acquire()
    keys.discard(current)
    assert keys.acquire() is not current


def now_in_the_job(job: Callable[[], None]) -> None:
    job()


def test_the_successor_is_made_ahead_and_takes_over(fast_keys: Callable[..., RecipientKeys]) -> None:
    nsm = CountingNsm()
    keys = fast_keys(nsm, max_age=60.0, max_uses=10, renew=now_in_the_job)
    first = keys.acquire()
    for _ in range(6):
        assert keys.acquire() is first
    assert nsm.calls == 1
    keys.acquire()  # the eighth use: 80 % of max_uses
    assert nsm.calls == 2
    assert keys.acquire() is keys.acquire() is first and nsm.calls == 2  # no second successor
    successor = keys.acquire()  # the eleventh use goes to the key made ahead, no waiting for the NSM
    assert successor is not first and successor.document == b"document-2" and successor.uses == 1
    assert nsm.calls == 2
    # By age too: at 48 of 60 seconds the next one is made.
    keys.clock[0] += 48.0  # type: ignore[attr-defined]
    keys.acquire()
    assert nsm.calls == 3
    keys.clock[0] += 12.0  # type: ignore[attr-defined]
    assert keys.acquire().document == b"document-3" and nsm.calls == 3


def test_a_successor_is_never_used_out_of_bounds(fast_keys: Callable[..., RecipientKeys]) -> None:
    nsm = CountingNsm()
    keys = fast_keys(nsm, max_age=60.0, max_uses=5, renew=now_in_the_job)
    for _ in range(4):
        first = keys.acquire()
    assert nsm.calls == 2  # the successor, made at 4 of 5 uses
    keys.clock[0] += 61.0  # type: ignore[attr-defined]
    fresh = keys.acquire()  # current and successor both expired: attest afresh
    assert fresh is not first and fresh.document == b"document-3" and fresh.created == keys.clock[0]  # type: ignore[attr-defined]
    # A refused key takes its successor with it.
    for _ in range(3):
        keys.acquire()
    assert nsm.calls == 4
    keys.discard(keys.acquire())
    assert keys.acquire().document == b"document-5" and nsm.calls == 5


def test_a_failed_renewal_leaves_the_error_to_the_rotation(rsa_key: rsa.RSAPrivateKey) -> None:
    nsm = CountingNsm()
    keys = RecipientKeys(nsm, max_uses=5, key_factory=lambda: rsa_key, renew=now_in_the_job)
    for _ in range(3):
        keys.acquire()
    nsm.fail = True
    keys.acquire()  # the renewal fails quietly
    keys.acquire()
    with pytest.raises(NsmError):
        keys.acquire()  # the rotation needs a key and reports why there is none
    nsm.fail = False
    assert keys.acquire().uses == 1


def test_renewal_in_a_thread(rsa_key: rsa.RSAPrivateKey) -> None:
    nsm = CountingNsm()
    keys = RecipientKeys(nsm, max_uses=5, key_factory=lambda: rsa_key)
    documents = set()
    deadline = time.monotonic() + 10
    while len(documents) < 3 and time.monotonic() < deadline:
        documents.add(keys.acquire().document)
        time.sleep(0.001)
    assert len(documents) == 3


def test_a_prepared_key_is_made_ahead_and_not_counted_as_a_use(
    fast_keys: Callable[..., RecipientKeys],
) -> None:
    nsm = CountingNsm()
    keys = fast_keys(nsm, max_age=60.0, max_uses=1)
    keys.prepare()
    keys.prepare()  # already prepared: no second document
    assert nsm.calls == 1
    prepared = keys.acquire()  # the one allowed use goes to the first request
    assert nsm.calls == 1 and prepared.document == b"document-1"
    assert keys.acquire() is not prepared and nsm.calls == 2
    with pytest.raises(NsmError):
        fast_keys(CountingNsm(fail=True)).prepare()


def test_warm_up_leaves_nsm_failures_to_the_first_request(harness: Harness) -> None:
    transport = UnixSocketTransport(harness.stack.vsock_dir, 16)
    with KmsKeyDecryptor(CountingNsm(fail=True), transport, EMULATOR_CONFIG) as decryptor:
        decryptor.warm_up()
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, b"blob", "v")
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED


def test_per_request_keys_and_nsm_failures(fast_keys: Callable[..., RecipientKeys]) -> None:
    nsm = CountingNsm()
    keys = fast_keys(nsm, max_uses=1)
    assert keys.acquire() is not keys.acquire() and nsm.calls == 2
    with pytest.raises(NsmError):
        fast_keys(CountingNsm(fail=True)).acquire()
    with pytest.raises(ValueError):
        fast_keys(nsm, max_uses=0)


def test_an_nsm_failure_is_an_attestation_failure(harness: Harness) -> None:
    transport = UnixSocketTransport(harness.stack.vsock_dir, 16)
    with KmsKeyDecryptor(CountingNsm(fail=True), transport, EMULATOR_CONFIG) as decryptor:
        with pytest.raises(KeyDecryptError) as refused:
            release(decryptor, b"blob", "v")
    assert refused.value.code == EnclaveErrorCode.ATTESTATION_FAILED


def test_reused_key_serves_consecutive_requests(harness: Harness) -> None:
    pair = harness.new_vault_key("v_reuse")
    nsm_socket = harness.register("enc-reuse")
    with KmsKeyDecryptor.from_env(harness.enclave_env(nsm_socket)) as decryptor:
        results = {release(decryptor, pair["PrivateKeyCiphertextBlob"], "v_reuse") for _ in range(3)}
        current = decryptor._keys.acquire()
        assert current.uses == 4  # three requests and this look: one key, one document
    assert len(results) == 1


# -- configuration, bridge, relay and proxy ------------------------------------------------------


def test_config_from_env() -> None:
    assert KmsDecryptorConfig.from_env({}) == KmsDecryptorConfig()
    config = KmsDecryptorConfig.from_env(
        {
            "VAULT_KMS_ENDPOINT": "http://127.0.0.1:{port}",
            "VAULT_KMS_BRIDGE": "127.0.0.1:0",
            "VAULT_KMS_PROXY_PORT": "8001",
            "VAULT_KMS_TIMEOUT": "3",
            "VAULT_KMS_MAX_ATTEMPTS": "1",
            "VAULT_KMS_KEY_MAX_AGE": "5",
            "VAULT_KMS_KEY_MAX_USES": "1",
        }
    )
    assert (config.bridge_host, config.bridge_port, config.proxy_port) == ("127.0.0.1", 0, 8001)
    assert (config.read_timeout, config.connect_timeout, config.max_attempts) == (3.0, 3.0, 1)
    assert (config.key_max_age, config.key_max_uses) == (5.0, 1)
    assert (
        KmsDecryptorConfig().endpoint.format(region="eu-west-1", port=443)
        == "https://kms.eu-west-1.amazonaws.com"
    )


def echo_server(transport: UnixSocketTransport, port: int) -> tuple[socket.socket, threading.Thread]:
    """Answers each connection with the bytes it received, reversed, once the client half-closes."""
    listener = transport.listen(port)
    listener.settimeout(0.05)

    def serve() -> None:
        while listener.fileno() != -1:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while chunk := conn.recv(65536):
                        data += chunk
                    conn.sendall(data[::-1])
                except OSError:
                    continue  # a client that hung up early (the bridge's refusal tests)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_bridge_relays_over_vsock_with_half_close(short_dir: Path) -> None:
    parent = UnixSocketTransport(short_dir, PARENT_CID)
    listener, thread = echo_server(parent, 8000)
    try:
        with KmsBridge(UnixSocketTransport(short_dir, 16), port=0) as bridge:
            assert bridge.port
            payload = bytes(range(256)) * 1000
            with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as conn:
                conn.sendall(payload)
                conn.shutdown(socket.SHUT_WR)
                received = b""
                while chunk := conn.recv(65536):
                    received += chunk
            assert received == payload[::-1]
    finally:
        listener.close()
        thread.join(timeout=5)
    with pytest.raises(ValueError, match="loopback"):
        KmsBridge(UnixSocketTransport(short_dir, 16), host="0.0.0.0")


def test_relay_refuses_connections_over_its_limit(short_dir: Path) -> None:
    parent = UnixSocketTransport(short_dir, PARENT_CID)
    listener, _ = echo_server(parent, 8000)
    try:
        with KmsBridge(UnixSocketTransport(short_dir, 16), port=0, max_connections=1) as bridge:
            assert bridge.port is not None
            first = socket.create_connection(("127.0.0.1", bridge.port), timeout=5)
            time.sleep(0.2)
            second = socket.create_connection(("127.0.0.1", bridge.port), timeout=5)
            assert second.recv(1) == b""  # closed at once
            first.close()
            second.close()
    finally:
        listener.close()


def test_vsock_proxy_allow_list(short_dir: Path) -> None:
    transport = UnixSocketTransport(short_dir, PARENT_CID)
    with pytest.raises(VsockProxyError, match="allow-list"):
        VsockProxy(
            transport, ("kms.us-east-1.amazonaws.com", 443), allowlist=[("kms.eu-west-1.amazonaws.com", 443)]
        )
    proxy = VsockProxy(
        transport, ("KMS.us-east-1.amazonaws.com", 443), allowlist=[("kms.us-east-1.amazonaws.com", 443)]
    )
    assert proxy.destination == ("KMS.us-east-1.amazonaws.com", 443)


def test_pcr3_is_the_instance_role_measurement() -> None:
    # The policy's PCR3 (from the role ARN) and the emulated document's PCR3 are one construction.
    assert PCR3 == hashlib.sha384(bytes(48) + INSTANCE_ROLE.encode()).hexdigest()
    assert enclave_pcrs(MEASUREMENTS, PCR3, instance_id=INSTANCE_ID, debug_mode=False)[3].hex() == PCR3
