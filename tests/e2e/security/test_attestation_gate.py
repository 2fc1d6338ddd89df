"""Only the measured enclave can have a vault key decrypted; nobody outside an enclave can.

* An enclave launched from an image whose code differs from the measured one gets
  ``AccessDeniedException`` from KMS: the API answers 502 ``EnclaveDecryptFailed``
  (enclave code ``AttestationFailed``), audits the attempt, returns nothing decrypted;
  relaunching the measured image restores decryption.
* The parent instance's role (credentials from IMDSv2, as anyone on the instance could
  fetch them) cannot ``kms:Decrypt`` a vault's encrypted private key: not directly, not as
  the production canary asks (``DryRun``), and not with a ``Recipient`` whose attestation
  document is self-made with exactly the measured enclave's PCRs, whether its chain is its
  own or claims the emulator's real root and intermediates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from e2e.security.targets import VaultTarget
from emulator.aws.imds import CREDENTIALS_PATH, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER
from emulator.daemon.components import INSTANCE_ID
from emulator.daemon.control import control_request
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.measure import measure_image
from emulator.nitro.nsm import enclave_pcrs
from emulator.nitro.pki import TestPki
from emulator.tools.client import VaultApiError, VaultClient
from emulator.tools.demo import CHANGED_CODE
from vault.common.authorization import authorizer_context
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY
from vault.infra.table import vault_key

RELAUNCH_TIMEOUT = 300.0


@pytest.fixture
def client(vault_target: VaultTarget) -> Iterator[VaultClient]:
    with vault_target.client() as api:
        yield api


def _relaunch(target: VaultTarget, overrides: dict[str, str]) -> dict[str, Any]:
    layout = target.layout("relaunching the emulator's enclave")
    reply = control_request(
        layout, {"op": "relaunch-enclave", "overrides": overrides}, timeout=RELAUNCH_TIMEOUT
    )
    assert reply.get("ok"), reply
    result: dict[str, Any] = reply["result"]
    return result


def test_changed_enclave_code_cannot_decrypt_until_the_measured_image_returns(
    vault_target: VaultTarget, client: VaultClient
) -> None:
    vault_target.emulator("relaunching the emulator's enclave")
    vault_id = client.create({"first_name": "Measuredonly Firstname", "dob": "1911-11-11"})
    assert client.decrypt(vault_id, ["first_name"], reason="measured").errors == []

    changed = _relaunch(vault_target, CHANGED_CODE)
    try:
        assert changed["pcr0"] != changed["policy_pcr0"]
        for fields, expressions in ((["first_name", "dob"], None), ([], {"age": "date('1911-11-11').age()"})):
            with pytest.raises(VaultApiError) as refused:
                client.decrypt(vault_id, fields, reason="changed code", expressions=expressions)
            assert refused.value.status == 502
            assert refused.value.code == "EnclaveDecryptFailed"
            assert refused.value.body.get("enclaveCode") == "AttestationFailed"
            assert "data" not in refused.value.body
            assert "Measuredonly" not in str(refused.value.body)
        trail = client.audit_trail(vault_id)
        assert [(e.event, e.outcome) for e in trail[-2:]] == [("DecryptVault", "EnclaveDecryptFailed")] * 2
    finally:
        restored = _relaunch(vault_target, {})
    assert restored["pcr0"] == restored["policy_pcr0"]
    again = client.decrypt(vault_id, ["first_name"], reason="measured again")
    assert (again.data, again.errors) == ({"first_name": "Measuredonly Firstname"}, [])


# -- KMS Decrypt from outside the enclave ---------------------------------------------------


def instance_role_credentials(imds_endpoint: str) -> dict[str, str]:
    """What any process on the parent instance can read: the role's credentials, over IMDSv2."""
    token = requests.put(imds_endpoint + TOKEN_PATH, headers={TTL_HEADER: "60"}, timeout=5)
    token.raise_for_status()
    headers = {TOKEN_HEADER: token.text}
    role = requests.get(imds_endpoint + CREDENTIALS_PATH, headers=headers, timeout=5)
    role.raise_for_status()
    answer = requests.get(imds_endpoint + CREDENTIALS_PATH + role.text.strip(), headers=headers, timeout=5)
    answer.raise_for_status()
    credentials: dict[str, str] = answer.json()
    assert credentials["AccessKeyId"] and credentials["SecretAccessKey"]
    return credentials


@pytest.fixture
def outsider(vault_target: VaultTarget, client: VaultClient) -> tuple[Any, dict[str, str], bytes]:
    """(KMS client with the instance role's credentials, a vault's full encryption context,
    that vault's encrypted key). The context is the one the vault key was made under, so a
    refusal is about who asks and with what document, never about a wrong context."""
    state = vault_target.emulator("the emulator's IMDS and KMS front")
    facts = state.facts
    credentials = instance_role_credentials(str(facts["imds_endpoint"]))
    kms = boto3.client(
        "kms",
        endpoint_url=str(facts["kms_endpoint"]),
        region_name=str(facts["region"]),
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["Token"],
        config=Config(retries={"total_max_attempts": 1}),
    )
    vault_id = client.create({"first_name": "Outsider Target"})
    dynamodb = vault_target.backend_client("dynamodb", "the AWS backend's table")
    item = dynamodb.get_item(TableName=facts["table_name"], Key=vault_key(vault_id), ConsistentRead=True)[
        "Item"
    ]
    backend_kms = vault_target.backend_client("kms", "the AWS backend's authorizer key")
    public_key = bytes(backend_kms.get_public_key(KeyId=str(facts["authorizer_key_arn"]))["PublicKey"])
    return kms, authorizer_context(vault_id, public_key, ENCRYPTION_CONTEXT_KEY), bytes(item["_sk"]["B"])


def _refusal(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as refused:
        answer = call(**kwargs)
        pytest.fail(f"KMS answered {sorted(answer)}")
    return str(refused.value.response["Error"]["Code"])


def test_the_instance_role_cannot_decrypt_a_vault_key(outsider: tuple[Any, dict[str, str], bytes]) -> None:
    kms, context, key_blob = outsider
    assert (
        _refusal(kms.decrypt, CiphertextBlob=key_blob, EncryptionContext=context) == "AccessDeniedException"
    )
    # The production canary's call: DryRunOperationException would mean "would have succeeded".
    assert _refusal(kms.decrypt, CiphertextBlob=key_blob, DryRun=True) != "DryRunOperationException"
    assert (
        _refusal(kms.decrypt, CiphertextBlob=key_blob, EncryptionContext=context, DryRun=True)
        == "AccessDeniedException"
    )


def _document(facts: dict[str, Any], signer: TestPki, cabundle: list[bytes]) -> bytes:
    """An attestation document with exactly the PCRs the NSM gives the measured enclave.

    Only its signature chain can be wrong, so a refusal is about the chain and nothing else.
    """
    measurements = measure_image(Path(str(facts["image_dir"])))
    assert measurements.pcr0 == facts["pcr0"]
    pcrs = enclave_pcrs(measurements, str(facts["pcr3"]), instance_id=INSTANCE_ID, debug_mode=False)
    module_id = f"{INSTANCE_ID}-enc0123456789abcdef"
    leaf = signer.issue_leaf(module_id)
    recipient_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = AttestationDocument(
        module_id=module_id,
        timestamp_ms=int(dt.datetime.now(dt.UTC).timestamp() * 1000),
        pcrs=pcrs,
        certificate=leaf.der,
        cabundle=tuple(cabundle),
        public_key=recipient_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
    )
    return document.sign(leaf.key)


def test_a_self_made_attestation_document_does_not_release_a_vault_key(
    vault_target: VaultTarget, outsider: tuple[Any, dict[str, str], bytes]
) -> None:
    kms, context, key_blob = outsider
    facts = vault_target.emulator("the emulator's measurements").facts
    emulator_pki = TestPki.load_or_create(vault_target.layout("the emulator's attestation PKI").pki)
    forger = TestPki.create("forger")

    def decrypt(document: bytes) -> Any:
        return kms.decrypt(
            CiphertextBlob=key_blob,
            EncryptionContext=context,
            Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": document},
        )

    # Signed by the forger's own chain, and by the forger's leaf presented under the
    # emulator's real root and intermediates (public certificates, as any document shows).
    for cabundle in (forger.cabundle, emulator_pki.cabundle):
        with pytest.raises(ClientError) as refused:
            decrypt(_document(facts, forger, cabundle))
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "attestation document is not valid" in refused.value.response["Error"]["Message"]

    # Control: the same document from the emulator's own attestation chain (its test PKI's
    # keys, which only the NSM holds) satisfies the key policy, and even then KMS answers
    # for the document's key only, never with the plaintext.
    answer = decrypt(_document(facts, emulator_pki, emulator_pki.cabundle))
    assert "CiphertextForRecipient" in answer and "Plaintext" not in answer
