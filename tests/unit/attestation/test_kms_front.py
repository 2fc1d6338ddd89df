"""The KMS attestation front in front of moto: what it refuses, what it answers, what it passes on."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
    load_der_public_key,
)

from emulator.aws.kms.front import Identity, KmsError, KmsFront
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.nsm import enclave_pcrs
from emulator.nitro.pki import TestPki
from vault.enclave.cms import open_enveloped_data
from vault.infra.key_policy import EnclaveMeasurements

from .conftest import API_KEY, API_ROLE, INSTANCE_KEY, MEASUREMENTS, PCR3, Harness, key_policy, kms_client


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def spki(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def good_document(pki: TestPki, public_key: bytes | None, **changes: Any) -> bytes:
    leaf = pki.issue_leaf("i-0e1a2b3c4d5e6f708-enc0000000000000001")
    fields: dict[str, Any] = {
        "module_id": "i-0e1a2b3c4d5e6f708-enc0000000000000001",
        "timestamp_ms": int(time.time() * 1000),
        "pcrs": enclave_pcrs(MEASUREMENTS, PCR3, instance_id="i-0e1a2b3c4d5e6f708", debug_mode=False),
        "certificate": leaf.der,
        "cabundle": tuple(pki.cabundle),
        "public_key": public_key,
    }
    fields.update(changes)
    return AttestationDocument(**fields).sign(leaf.key)


def test_recipientless_decrypt_by_the_instance_role_is_refused(harness: Harness) -> None:
    blob = harness.new_vault_key("v_canary")["PrivateKeyCiphertextBlob"]
    with pytest.raises(ClientError) as refused:
        harness.instance_client().decrypt(CiphertextBlob=blob, EncryptionContext={"vault_id": "v_canary"})
    assert error_code(refused) == "AccessDeniedException"
    assert "is not authorized to perform: kms:Decrypt" in refused.value.response["Error"]["Message"]


def test_attested_decrypt_answers_ciphertext_for_recipient_only(
    harness: Harness, pki: TestPki, rsa_key: rsa.RSAPrivateKey
) -> None:
    pair = harness.new_vault_key("v_attested")
    response = harness.instance_client().decrypt(
        CiphertextBlob=pair["PrivateKeyCiphertextBlob"],
        EncryptionContext={"vault_id": "v_attested"},
        Recipient={
            "AttestationDocument": good_document(pki, spki(rsa_key)),
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        },
    )
    assert "Plaintext" not in response
    assert response["KeyId"] == harness.key_arn
    private = load_der_private_key(open_enveloped_data(response["CiphertextForRecipient"], rsa_key), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
    assert (
        private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        == pair["PublicKey"]
    )


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-public-key", "does not contain a public key"),
        ("ec-public-key", "not an RSA key"),
        ("small-rsa-key", "not an RSA key"),
        ("stale", "(stale)"),
        ("garbage", "(cose)"),
    ],
)
def test_unusable_documents_are_refused(harness: Harness, pki: TestPki, case: str, reason: str) -> None:
    documents = {
        "no-public-key": lambda: good_document(pki, None),
        "ec-public-key": lambda: good_document(
            pki,
            ec.generate_private_key(ec.SECP384R1())
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        ),
        "small-rsa-key": lambda: good_document(pki, spki(rsa.generate_private_key(65537, 1024))),
        "stale": lambda: good_document(pki, b"k", timestamp_ms=int((time.time() - 600) * 1000)),
        "garbage": lambda: b"\x84not cose",
    }
    pair = harness.new_vault_key(f"v_{case}")
    with pytest.raises(ClientError) as refused:
        harness.instance_client().decrypt(
            CiphertextBlob=pair["PrivateKeyCiphertextBlob"],
            EncryptionContext={"vault_id": f"v_{case}"},
            Recipient={
                "AttestationDocument": documents[case](),
                "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            },
        )
    assert error_code(refused) == "AccessDeniedException"
    assert reason in refused.value.response["Error"]["Message"]


def test_recipient_algorithm_must_be_oaep_sha256(
    harness: Harness, pki: TestPki, rsa_key: rsa.RSAPrivateKey
) -> None:
    front = harness.stack.front
    identity = Identity("arn:aws:iam::123456789012:role/nitro-vault-instance")
    with pytest.raises(KmsError) as refused:
        front.decrypt(
            identity,
            {
                "CiphertextBlob": base64.b64encode(b"x").decode(),
                "Recipient": {
                    "AttestationDocument": base64.b64encode(good_document(pki, spki(rsa_key))).decode(),
                    "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1",
                },
            },
        )
    assert refused.value.error_type == "ValidationException"


def test_key_pair_generation(harness: Harness) -> None:
    pair = harness.new_vault_key("v_shape")
    assert pair["KeyId"] == harness.key_arn and pair["KeyPairSpec"] == "ECC_NIST_P384"
    public = load_der_public_key(pair["PublicKey"])
    assert isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP384R1)
    assert "PrivateKeyPlaintext" not in pair
    api = harness.api_client()
    for arguments in (
        {"KeyPairSpec": "RSA_2048", "EncryptionContext": {"vault_id": "v"}},  # the policy pins the spec
        {"KeyPairSpec": "ECC_NIST_P384"},  # decision D10: no key pair without a vault id
    ):
        with pytest.raises(ClientError) as refused:
            api.generate_data_key_pair_without_plaintext(KeyId=harness.key_arn, **arguments)
        assert error_code(refused) == "AccessDeniedException"
    with pytest.raises(ClientError) as instance_refused:
        harness.instance_client().generate_data_key_pair_without_plaintext(
            KeyId=harness.key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": "v"}
        )
    assert error_code(instance_refused) == "AccessDeniedException"


def test_the_backend_binds_the_encryption_context(harness: Harness, moto_url: str) -> None:
    pair = harness.new_vault_key("v_bound")
    backend = kms_client(moto_url)
    with pytest.raises(ClientError) as wrong:
        backend.decrypt(
            CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"vault_id": "v_other"}
        )
    assert error_code(wrong) == "InvalidCiphertextException"
    plain = backend.decrypt(
        CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"vault_id": "v_bound"}
    )
    assert load_der_private_key(plain["Plaintext"], None)


def test_callers_are_identified_by_access_key(harness: Harness) -> None:
    stranger = kms_client(harness.front_url, "ASIASTRANGER00000001", "s")
    with pytest.raises(ClientError) as refused:
        stranger.generate_data_key_pair_without_plaintext(
            KeyId=harness.key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": "v"}
        )
    assert error_code(refused) == "UnrecognizedClientException"
    harness.stack.front.add_identity(API_KEY, Identity(API_ROLE, secret_access_key="api-secret"))
    harness.new_vault_key("v_signed")  # signed with the right secret
    with pytest.raises(ClientError) as forged:
        kms_client(harness.front_url, API_KEY, "not-the-secret").generate_data_key_pair_without_plaintext(
            KeyId=harness.key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": "v"}
        )
    assert error_code(forged) == "InvalidSignatureException"


def test_operations_on_other_keys_pass_through_and_on_the_vault_key_need_its_policy(harness: Harness) -> None:
    api = harness.api_client()
    assert harness.key_arn in [k["KeyArn"] for k in api.list_keys()["Keys"]]
    own_key = api.create_key(Description="not the vault key")["KeyMetadata"]["Arn"]
    encrypted = api.encrypt(KeyId=own_key, Plaintext=b"data")
    assert encrypted["KeyId"] == own_key
    with pytest.raises(ClientError) as not_allowed:  # the vault key policy allows the API no Encrypt
        api.encrypt(KeyId=harness.key_arn, Plaintext=b"data")
    assert error_code(not_allowed) == "AccessDeniedException"
    with pytest.raises(ClientError) as refused:  # GenerateDataKey takes a Recipient: this one is no document
        api.generate_data_key(
            KeyId=harness.key_arn,
            KeySpec="AES_256",
            Recipient={"AttestationDocument": b"doc", "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
        )
    assert error_code(refused) == "AccessDeniedException"
    assert "The attestation document is not valid (cose)" in refused.value.response["Error"]["Message"]


def test_policy_comes_from_the_backend_when_not_set(
    harness: Harness, moto_url: str, pki: TestPki, rsa_key: rsa.RSAPrivateKey
) -> None:
    admin = kms_client(moto_url)
    other_image = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48)
    outcomes = {}
    for name, measurements in (("same", MEASUREMENTS), ("other", other_image)):
        key = admin.create_key(Policy=json.dumps(key_policy(measurements)))["KeyMetadata"]["Arn"]
        pair = harness.api_client().generate_data_key_pair_without_plaintext(
            KeyId=key, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": "v"}
        )
        try:
            harness.instance_client().decrypt(
                CiphertextBlob=pair["PrivateKeyCiphertextBlob"],
                EncryptionContext={"vault_id": "v"},
                Recipient={"AttestationDocument": good_document(pki, spki(rsa_key))},
            )
            outcomes[name] = "ok"
        except ClientError as exc:
            outcomes[name] = exc.response["Error"]["Code"]
    assert outcomes == {"same": "ok", "other": "AccessDeniedException"}


def test_during_an_upgrade_documents_of_either_image_decrypt_and_mixtures_do_not(
    harness: Harness, pki: TestPki, rsa_key: rsa.RSAPrivateKey
) -> None:
    following = EnclaveMeasurements(pcr0="0b" * 48, pcr1="1b" * 48, pcr2="2b" * 48, pcr8="8b" * 48)
    mixed = EnclaveMeasurements(
        pcr0=MEASUREMENTS.pcr0, pcr1=MEASUREMENTS.pcr1, pcr2=following.pcr2, pcr8=MEASUREMENTS.pcr8
    )
    harness.stack.front.set_key_policy(harness.key_arn, key_policy(MEASUREMENTS, following))
    pair = harness.new_vault_key("v_rolling")
    outcomes = {}
    for name, image in (("current", MEASUREMENTS), ("following", following), ("mixed", mixed)):
        pcrs = enclave_pcrs(image, PCR3, instance_id="i-0e1a2b3c4d5e6f708", debug_mode=False)
        try:
            harness.instance_client().decrypt(
                CiphertextBlob=pair["PrivateKeyCiphertextBlob"],
                EncryptionContext={"vault_id": "v_rolling"},
                Recipient={"AttestationDocument": good_document(pki, spki(rsa_key), pcrs=pcrs)},
            )
            outcomes[name] = "ok"
        except ClientError as exc:
            outcomes[name] = exc.response["Error"]["Code"]
    assert outcomes == {"current": "ok", "following": "ok", "mixed": "AccessDeniedException"}


def test_throttling_and_latency_faults(harness: Harness) -> None:
    faults = harness.stack.front.faults
    api = kms_client(harness.front_url, API_KEY, "api-secret", attempts=1)
    faults.throttle(1, operation="ListKeys")
    with pytest.raises(ClientError) as throttled:
        api.list_keys()
    assert error_code(throttled) == "ThrottlingException"
    api.list_keys()  # only one request was throttled
    faults.latency(0.15)
    started = time.perf_counter()
    api.list_keys()
    assert time.perf_counter() - started >= 0.15
    faults.clear()


def test_front_lifecycle(pki: TestPki, moto_url: str) -> None:
    front = KmsFront(backend=moto_url, trusted_root=pki.root.certificate, identities={INSTANCE_KEY: "x"})
    with pytest.raises(RuntimeError):
        _ = front.port
    with front:
        assert front.endpoint_url == f"http://127.0.0.1:{front.port}"
    assert front.max_document_age == dt.timedelta(minutes=5)


def test_oversized_requests_are_refused_and_the_connection_closed(harness: Harness) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", harness.stack.front.port, timeout=5)
    try:
        connection.putrequest("POST", "/")
        connection.putheader("X-Amz-Target", "TrentService.Decrypt")
        connection.putheader("Content-Length", str(2 * 1024 * 1024))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["__type"] == "ValidationException"
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


def test_dry_run_is_answered_412_after_the_policy_check(
    harness: Harness, pki: TestPki, rsa_key: rsa.RSAPrivateKey
) -> None:
    blob = harness.new_vault_key("v_dry")["PrivateKeyCiphertextBlob"]
    context = {"vault_id": "v_dry"}
    recipient = {
        "AttestationDocument": good_document(pki, spki(rsa_key)),
        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
    }
    pair = {"KeyId": harness.key_arn, "KeyPairSpec": "ECC_NIST_P384", "EncryptionContext": context}
    api, instance = harness.api_client(), harness.instance_client()
    allowed = (
        lambda: api.generate_data_key_pair_without_plaintext(**pair, DryRun=True),
        lambda: instance.decrypt(
            CiphertextBlob=blob, EncryptionContext=context, Recipient=recipient, DryRun=True
        ),
    )
    for call in allowed:
        with pytest.raises(ClientError) as dry:
            call()
        assert error_code(dry) == "DryRunOperationException"
        assert dry.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    denied = (
        lambda: instance.generate_data_key_pair_without_plaintext(**pair, DryRun=True),
        lambda: instance.decrypt(CiphertextBlob=blob, EncryptionContext=context, DryRun=True),
    )
    for call in denied:
        with pytest.raises(ClientError) as refused:
            call()
        assert error_code(refused) == "AccessDeniedException"
