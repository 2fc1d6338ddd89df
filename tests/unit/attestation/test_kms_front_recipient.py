"""Every KMS operation that takes a Recipient, on the front in front of moto, with and without attestation.

Matching PCRs: ``CiphertextForRecipient`` that opens with the recipient's private key to the
right material, and no plaintext. Other PCRs: ``AccessDeniedException`` -- except for
``GenerateRandom``, which has no key and so no key policy (as on AWS), where only the
document itself is judged. No Recipient: what the key policy says.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

from emulator.aws.kms.decisions import Decision, DecisionLog
from emulator.aws.kms.front import KEY_PAIR_SPECS, Identity, KmsError
from emulator.aws.kms.moto_keys import MotoKeyAgreement
from emulator.aws.kms.operations import operation
from emulator.aws.kms.policy import RequestContext, explain
from emulator.nitro.nsm import enclave_pcrs
from emulator.nitro.pki import TestPki
from vault.enclave.cms import open_enveloped_data
from vault.infra.key_policy import DECRYPT_SID

from .conftest import API_ROLE, INSTANCE_ROLE, MEASUREMENTS, PCR3, Harness, kms_client
from .test_kms_front import good_document, spki

ATTESTED_SID = "AttestedEnclave"
API_SID = "ApiWithoutAttestation"
ATTESTED_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair", "kms:DeriveSharedSecret"]
CONTEXT = {"purpose": "recipient-tests"}
INSTANCE_ID = "i-0e1a2b3c4d5e6f708"


def recipient_policy() -> dict[str, Any]:
    """The instance role only with a document of the measured image; the API role without one."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": ATTESTED_SID,
                "Effect": "Allow",
                "Principal": {"AWS": INSTANCE_ROLE},
                "Action": ATTESTED_ACTIONS,
                "Resource": "*",
                "Condition": {
                    "StringEqualsIgnoreCase": {
                        "kms:RecipientAttestation:ImageSha384": MEASUREMENTS.pcr0,
                        "kms:RecipientAttestation:PCR1": MEASUREMENTS.pcr1,
                        "kms:RecipientAttestation:PCR2": MEASUREMENTS.pcr2,
                    }
                },
            },
            {
                "Sid": API_SID,
                "Effect": "Allow",
                "Principal": {"AWS": API_ROLE},
                "Action": [*ATTESTED_ACTIONS, "kms:Encrypt", "kms:GenerateDataKeyPairWithoutPlaintext"],
                "Resource": "*",
            },
        ],
    }


@dataclass
class Keys:
    harness: Harness
    #: A symmetric key and a P-256 key agreement key, both under :func:`recipient_policy`.
    symmetric: str
    agreement: str
    document: bytes
    wrong_pcr2: bytes
    rsa_key: rsa.RSAPrivateKey

    def instance(self) -> Any:
        return self.harness.instance_client()

    def api(self) -> Any:
        return self.harness.api_client()

    def recipient(self, document: bytes | None = None) -> dict[str, Any]:
        return {
            "AttestationDocument": document if document is not None else self.document,
            "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
        }

    def open(self, answer: dict[str, Any]) -> bytes:
        assert isinstance(answer["CiphertextForRecipient"], bytes)
        return open_enveloped_data(answer["CiphertextForRecipient"], self.rsa_key)


def pcrs_with(index: int, value: bytes) -> dict[int, bytes]:
    pcrs = enclave_pcrs(MEASUREMENTS, PCR3, instance_id=INSTANCE_ID, debug_mode=False)
    pcrs[index] = value
    return pcrs


@pytest.fixture
def keys(harness: Harness, moto_url: str, pki: TestPki, rsa_key: rsa.RSAPrivateKey) -> Iterator[Keys]:
    moto = kms_client(moto_url)
    symmetric = str(moto.create_key(Description="recipient tests")["KeyMetadata"]["Arn"])
    agreement = str(moto.create_key(KeyUsage="KEY_AGREEMENT", KeySpec="ECC_NIST_P256")["KeyMetadata"]["Arn"])
    front = harness.stack.front
    for key in (symmetric, agreement):
        front.set_key_policy(key, recipient_policy())
    front.key_agreement = MotoKeyAgreement()
    yield Keys(
        harness=harness,
        symmetric=symmetric,
        agreement=agreement,
        document=good_document(pki, spki(rsa_key)),
        wrong_pcr2=good_document(pki, spki(rsa_key), pcrs=pcrs_with(2, b"\x2f" * 48)),
        rsa_key=rsa_key,
    )


def error_of(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


# -- GenerateDataKey ---------------------------------------------------------------------------


def test_generate_data_key_for_an_attested_recipient(keys: Keys, moto_url: str) -> None:
    answer = keys.instance().generate_data_key(
        KeyId=keys.symmetric, KeySpec="AES_256", EncryptionContext=CONTEXT, Recipient=keys.recipient()
    )
    assert answer.get("Plaintext") in (None, b"")
    assert answer["KeyId"] == keys.symmetric
    data_key = keys.open(answer)
    assert len(data_key) == 32
    # The CiphertextBlob is the same data key under the KMS key.
    opened = kms_client(moto_url).decrypt(CiphertextBlob=answer["CiphertextBlob"], EncryptionContext=CONTEXT)
    assert opened["Plaintext"] == data_key
    sized = keys.instance().generate_data_key(
        KeyId=keys.symmetric, NumberOfBytes=17, Recipient=keys.recipient()
    )
    assert len(keys.open(sized)) == 17


def test_generate_data_key_with_other_pcrs_or_without_recipient(keys: Keys) -> None:
    instance = keys.instance()
    assert (
        error_of(
            lambda: instance.generate_data_key(
                KeyId=keys.symmetric, KeySpec="AES_256", Recipient=keys.recipient(keys.wrong_pcr2)
            )
        )
        == "AccessDeniedException"
    )
    assert (
        error_of(lambda: instance.generate_data_key(KeyId=keys.symmetric, KeySpec="AES_256"))
        == "AccessDeniedException"
    )
    # The key policy lets the API role have the plaintext data key without attestation.
    plain = keys.api().generate_data_key(KeyId=keys.symmetric, KeySpec="AES_128")
    assert len(plain["Plaintext"]) == 16 and "CiphertextForRecipient" not in plain


# -- GenerateDataKeyPair -----------------------------------------------------------------------


def public_of(private_der: bytes) -> bytes:
    private = load_der_private_key(private_der, None)
    assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


EXPECTED_CURVES = {
    "ECC_NIST_P256": "secp256r1",
    "ECC_NIST_P384": "secp384r1",
    "ECC_NIST_P521": "secp521r1",
    "ECC_SECG_P256K1": "secp256k1",
}


@pytest.mark.parametrize("spec", sorted(KEY_PAIR_SPECS))
def test_generate_data_key_pair_for_an_attested_recipient(keys: Keys, moto_url: str, spec: str) -> None:
    answer = keys.instance().generate_data_key_pair(
        KeyId=keys.symmetric, KeyPairSpec=spec, EncryptionContext=CONTEXT, Recipient=keys.recipient()
    )
    assert answer.get("PrivateKeyPlaintext") in (None, b"")
    assert (answer["KeyId"], answer["KeyPairSpec"]) == (keys.symmetric, spec)
    private_der = keys.open(answer)
    assert public_of(private_der) == answer["PublicKey"]
    public = load_der_public_key(answer["PublicKey"])
    if spec.startswith("RSA_"):
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == int(spec.removeprefix("RSA_"))
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == EXPECTED_CURVES[spec]
    # The encrypted copy is the same private key, under the KMS key and the encryption context.
    opened = kms_client(moto_url).decrypt(
        CiphertextBlob=answer["PrivateKeyCiphertextBlob"], EncryptionContext=CONTEXT
    )
    assert opened["Plaintext"] == private_der


def test_generate_data_key_pair_with_other_pcrs_or_without_recipient(keys: Keys) -> None:
    instance = keys.instance()
    pair = {"KeyId": keys.symmetric, "KeyPairSpec": "ECC_NIST_P256"}
    assert (
        error_of(lambda: instance.generate_data_key_pair(**pair, Recipient=keys.recipient(keys.wrong_pcr2)))
        == "AccessDeniedException"
    )
    assert error_of(lambda: instance.generate_data_key_pair(**pair)) == "AccessDeniedException"
    plain = keys.api().generate_data_key_pair(**pair)
    assert public_of(plain["PrivateKeyPlaintext"]) == plain["PublicKey"]
    assert "CiphertextForRecipient" not in plain
    assert (
        error_of(lambda: keys.api().generate_data_key_pair(KeyId=keys.symmetric, KeyPairSpec="RSA_1024"))
        == "ValidationException"
    )


def test_generate_data_key_pair_without_plaintext_makes_every_spec(keys: Keys) -> None:
    for spec in ("RSA_3072", "ECC_SECG_P256K1"):
        answer = keys.api().generate_data_key_pair_without_plaintext(KeyId=keys.symmetric, KeyPairSpec=spec)
        assert "PrivateKeyPlaintext" not in answer and "CiphertextForRecipient" not in answer
        assert answer["KeyPairSpec"] == spec


# -- GenerateRandom ----------------------------------------------------------------------------


def test_generate_random_for_an_attested_recipient(keys: Keys, other_pki: TestPki) -> None:
    instance = keys.instance()
    answer = instance.generate_random(NumberOfBytes=48, Recipient=keys.recipient())
    assert answer.get("Plaintext") in (None, b"")
    first = keys.open(answer)
    assert len(first) == 48
    assert keys.open(instance.generate_random(NumberOfBytes=48, Recipient=keys.recipient())) != first
    # No key, so no key policy: other PCRs are no reason to refuse (AWS applies none either) ...
    assert (
        len(keys.open(instance.generate_random(NumberOfBytes=8, Recipient=keys.recipient(keys.wrong_pcr2))))
        == 8
    )
    # ... but a document that does not verify is.
    foreign = good_document(other_pki, spki(keys.rsa_key))
    assert error_of(lambda: instance.generate_random(NumberOfBytes=8, Recipient=keys.recipient(foreign))) == (
        "AccessDeniedException"
    )
    # Without a Recipient it is the backend's, in plaintext.
    assert len(instance.generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert error_of(lambda: instance.generate_random(NumberOfBytes=2048, Recipient=keys.recipient())) == (
        "ValidationException"
    )


# -- DeriveSharedSecret ------------------------------------------------------------------------


def expected_secret(moto_url: str, key: str, peer: ec.EllipticCurvePrivateKey) -> bytes:
    kms_public = load_der_public_key(kms_client(moto_url).get_public_key(KeyId=key)["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    return peer.exchange(ec.ECDH(), kms_public)


def peer_der(peer: ec.EllipticCurvePrivateKey) -> bytes:
    return peer.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_derive_shared_secret_for_an_attested_recipient(keys: Keys, moto_url: str) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    answer = keys.instance().derive_shared_secret(
        KeyId=keys.agreement,
        KeyAgreementAlgorithm="ECDH",
        PublicKey=peer_der(peer),
        Recipient=keys.recipient(),
    )
    assert answer.get("SharedSecret") in (None, b"")
    assert (answer["KeyId"], answer["KeyAgreementAlgorithm"]) == (keys.agreement, "ECDH")
    assert keys.open(answer) == expected_secret(moto_url, keys.agreement, peer)


def test_derive_shared_secret_with_other_pcrs_or_without_recipient(keys: Keys, moto_url: str) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    request = {"KeyId": keys.agreement, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer_der(peer)}
    instance = keys.instance()
    assert (
        error_of(lambda: instance.derive_shared_secret(**request, Recipient=keys.recipient(keys.wrong_pcr2)))
        == "AccessDeniedException"
    )
    assert error_of(lambda: instance.derive_shared_secret(**request)) == "AccessDeniedException"
    plain = keys.api().derive_shared_secret(**request)
    assert plain["SharedSecret"] == expected_secret(moto_url, keys.agreement, peer)


def test_derive_shared_secret_refuses_other_keys_and_curves(keys: Keys) -> None:
    api = keys.api()
    other_curve = peer_der(ec.generate_private_key(ec.SECP384R1()))
    assert (
        error_of(
            lambda: api.derive_shared_secret(
                KeyId=keys.agreement, KeyAgreementAlgorithm="ECDH", PublicKey=other_curve
            )
        )
        == "ValidationException"
    )
    p256 = peer_der(ec.generate_private_key(ec.SECP256R1()))
    assert (
        error_of(
            lambda: api.derive_shared_secret(
                KeyId=keys.symmetric, KeyAgreementAlgorithm="ECDH", PublicKey=p256
            )
        )
        == "InvalidKeyUsageException"
    )


# -- Decrypt (the operation the vault uses; here under a policy of the test's own) -------------------


def test_decrypt_for_an_attested_recipient_and_not_for_other_pcrs(keys: Keys) -> None:
    blob = keys.api().encrypt(KeyId=keys.symmetric, Plaintext=b"sealed", EncryptionContext=CONTEXT)[
        "CiphertextBlob"
    ]
    instance = keys.instance()
    answer = instance.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT, Recipient=keys.recipient())
    assert "Plaintext" not in answer and keys.open(answer) == b"sealed"
    assert (
        error_of(
            lambda: instance.decrypt(
                CiphertextBlob=blob, EncryptionContext=CONTEXT, Recipient=keys.recipient(keys.wrong_pcr2)
            )
        )
        == "AccessDeniedException"
    )
    assert keys.api().decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"] == b"sealed"


def test_a_recipient_on_an_operation_that_takes_none_is_refused(keys: Keys) -> None:
    front = keys.harness.stack.front
    encrypt = operation("Encrypt")
    assert encrypt is not None
    payload = {"KeyId": keys.symmetric, "Plaintext": "eA==", "Recipient": {"AttestationDocument": "eA=="}}
    with pytest.raises(KmsError) as refused:
        front.serve(encrypt, Identity(API_ROLE), payload, [], json.dumps(payload).encode())
    assert (refused.value.error_type, refused.value.message) == (
        "ValidationException",
        "Encrypt takes no Recipient",
    )


# -- decisions -------------------------------------------------------------------------------


def decision_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        dict(getattr(record, "fields", {}))
        for record in caplog.records
        if record.name == "emulator.aws.kms.front" and record.getMessage() == "kms front decision"
    ]


def test_a_denial_names_the_pcr_that_did_not_match(keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="emulator.aws.kms.front")
    with pytest.raises(ClientError):
        keys.instance().generate_data_key(
            KeyId=keys.symmetric, KeySpec="AES_256", Recipient=keys.recipient(keys.wrong_pcr2)
        )
    latest = keys.harness.stack.front.decisions.recent(1)[0]
    assert (latest.operation, latest.key_id, latest.principal, latest.allowed) == (
        "GenerateDataKey",
        keys.symmetric,
        INSTANCE_ROLE,
        False,
    )
    assert f"{ATTESTED_SID}: StringEqualsIgnoreCase kms:RecipientAttestation:PCR2" in latest.reason
    assert "PCR1" not in latest.reason and "ImageSha384" not in latest.reason
    # Names, never values: neither the measured PCRs nor the document's.
    for value in (MEASUREMENTS.pcr2, "2f" * 48, MEASUREMENTS.pcr0):
        assert value not in latest.reason.lower()
    lines = decision_lines(caplog)
    assert lines[-1] == {
        "operation": "GenerateDataKey",
        "key_id": keys.symmetric,
        "principal": INSTANCE_ROLE,
        "allowed": False,
        "reason": latest.reason,
    }


def test_a_vault_decrypt_with_another_pcr2_names_the_vault_statement(keys: Keys) -> None:
    harness = keys.harness
    blob = harness.new_vault_key("v_decisions")["PrivateKeyCiphertextBlob"]
    with pytest.raises(ClientError):
        harness.instance_client().decrypt(
            CiphertextBlob=blob,
            EncryptionContext={"vault_id": "v_decisions"},
            Recipient=keys.recipient(keys.wrong_pcr2),
        )
    latest = harness.stack.front.decisions.recent(1)[0]
    assert (latest.operation, latest.key_id, latest.allowed) == ("Decrypt", harness.key_arn, False)
    assert latest.reason == (
        "kms:Decrypt: no statement allows the action; conditions not matched: "
        f"{DECRYPT_SID}: StringEqualsIgnoreCase kms:RecipientAttestation:PCR2"
    )


def test_allowed_and_refused_documents_are_recorded(keys: Keys, other_pki: TestPki) -> None:
    decisions = keys.harness.stack.front.decisions
    keys.instance().generate_data_key(KeyId=keys.symmetric, KeySpec="AES_256", Recipient=keys.recipient())
    allowed = decisions.recent(1)[0]
    assert allowed.allowed and allowed.reason == f"kms:GenerateDataKey: allowed by statement {ATTESTED_SID}"
    foreign = good_document(other_pki, spki(keys.rsa_key))
    with pytest.raises(ClientError):
        keys.instance().generate_data_key_pair(
            KeyId=keys.symmetric, KeyPairSpec="ECC_NIST_P256", Recipient=keys.recipient(foreign)
        )
    refused = decisions.recent(1)[0]
    assert refused.operation == "GenerateDataKeyPair" and not refused.allowed
    assert refused.reason.startswith("Recipient refused: The attestation document is not valid (")
    keys.instance().generate_random(NumberOfBytes=4, Recipient=keys.recipient())
    assert decisions.recent(1)[0] == Decision(
        at=decisions.recent(1)[0].at,
        operation="GenerateRandom",
        key_id=None,
        principal=INSTANCE_ROLE,
        allowed=True,
        reason="attestation verified; no key policy applies",
    )
    assert [d.operation for d in decisions.recent(3)] == [
        "GenerateRandom",
        "GenerateDataKeyPair",
        "GenerateDataKey",
    ]


def test_an_explicit_deny_names_its_statement(keys: Keys) -> None:
    policy = recipient_policy()
    policy["Statement"].append(
        {
            "Sid": "NoPairs",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "kms:GenerateDataKeyPair",
            "Resource": "*",
        }
    )
    keys.harness.stack.front.set_key_policy(keys.symmetric, json.loads(json.dumps(policy)))
    with pytest.raises(ClientError):
        keys.api().generate_data_key_pair(KeyId=keys.symmetric, KeyPairSpec="ECC_NIST_P256")
    latest = keys.harness.stack.front.decisions.recent(1)[0]
    assert (
        not latest.allowed
        and latest.reason == "kms:GenerateDataKeyPair: explicitly denied by statement NoPairs"
    )


def test_the_decision_log_is_a_bounded_ring_newest_first() -> None:
    log = DecisionLog(capacity=5)
    for index in range(8):
        log.record(Decision(float(index), "Decrypt", None, None, index % 2 == 0, f"r{index}"))
    assert len(log) == 5
    assert [d.reason for d in log.recent()] == ["r7", "r6", "r5", "r4", "r3"]
    assert [d.reason for d in log.recent(2)] == ["r7", "r6"]
    assert log.recent(0) == []
    with pytest.raises(ValueError):
        DecisionLog(capacity=0)
    assert DecisionLog().capacity == 200


def test_the_decision_log_takes_concurrent_records() -> None:
    log = DecisionLog(capacity=1000)

    def writer(thread: int) -> None:
        for index in range(100):
            log.record(Decision(0.0, "Decrypt", None, None, True, f"{thread}-{index}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(log) == 800
    assert len({d.reason for d in log.recent(1000)}) == 800


def test_explain_lists_only_the_allow_statements_that_name_the_caller() -> None:
    request = RequestContext(
        principal_arn=INSTANCE_ROLE,
        action="kms:Decrypt",
        resource="arn:aws:kms:us-east-1:123456789012:key/k",
        keys={"kms:RecipientAttestation:PCR1": [MEASUREMENTS.pcr1]},
    )
    assert explain(recipient_policy(), request) == (
        f"{ATTESTED_SID}: StringEqualsIgnoreCase kms:RecipientAttestation:ImageSha384, "
        "StringEqualsIgnoreCase kms:RecipientAttestation:PCR2",
    )
    assert explain({"Statement": "unreadable"}, request) == ()
    assert explain(recipient_policy(), RequestContext(API_ROLE, "kms:Decrypt", "k")) == ()
