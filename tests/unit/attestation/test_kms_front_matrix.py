"""Principals x the operations that could reveal or re-wrap the vault key, as real requests to the front.

Each principal signs with its own secret (the front verifies it) and asks, for a vault
key fronted with the deployed key policy, every operation that would hand out the key, a
copy of it, or a way to one: only the attested instance role decrypts, only with a
Recipient; nobody creates a grant, re-encrypts, encrypts or gets a data key; only the key
administrator may change the policy. IAM allowing ``kms:*`` changes none of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator.aws.kms.front import Identity
from emulator.nitro.pki import TestPki

from .conftest import ACCOUNT, API_ROLE, INSTANCE_ROLE, Harness, key_policy, kms_client
from .test_kms_front import good_document, spki


@dataclass(frozen=True)
class Caller:
    name: str
    arn: str
    iam: tuple[str, ...] = ()

    @property
    def access_key(self) -> str:
        return "ASIA" + "".join(c for c in self.name.upper() if c.isalnum()).ljust(16, "0")[:16]


ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-key-admin"
CALLERS = (
    Caller("instance", INSTANCE_ROLE),
    Caller(
        "instance-session", f"arn:aws:sts::{ACCOUNT}:assumed-role/nitro-vault-instance/i-0e1a2b3c4d5e6f708"
    ),
    Caller("api", API_ROLE, ("kms:Decrypt", "kms:GenerateDataKeyPairWithoutPlaintext")),
    Caller("administrator", ADMIN_ROLE),
    Caller("iam-kms-all", f"arn:aws:iam::{ACCOUNT}:role/operations", ("kms:*",)),
    Caller("unknown", f"arn:aws:iam::{ACCOUNT}:role/someone"),
)
CONTEXT = {"vault_id": "v_matrix"}


@dataclass
class Target:
    harness: Harness
    key: str
    blob: bytes
    own_key: str
    own_blob: bytes
    document: bytes


@pytest.fixture
def target(harness: Harness, moto_url: str, pki: TestPki, rsa_key: rsa.RSAPrivateKey) -> Iterator[Target]:
    moto = kms_client(moto_url)
    key = str(moto.create_key(Description="matrix vault key")["KeyMetadata"]["Arn"])
    harness.stack.front.set_key_policy(key, key_policy(admin_role_arn=ADMIN_ROLE))
    for caller in CALLERS:
        harness.stack.front.add_identity(
            caller.access_key,
            Identity(caller.arn, secret_access_key=f"{caller.name}-secret", iam_allowed_actions=caller.iam),
        )
    blob = harness.api_client().generate_data_key_pair_without_plaintext(
        KeyId=key, KeyPairSpec="ECC_NIST_P384", EncryptionContext=CONTEXT
    )["PrivateKeyCiphertextBlob"]
    own_key = str(moto.create_key(Description="a key of the caller's own")["KeyMetadata"]["Arn"])
    own_blob = moto.encrypt(KeyId=own_key, Plaintext=b"chosen")["CiphertextBlob"]
    yield Target(harness, key, blob, own_key, own_blob, good_document(pki, spki(rsa_key)))


def client_of(target: Target, caller: Caller) -> Any:
    return kms_client(target.harness.front_url, caller.access_key, f"{caller.name}-secret", attempts=1)


#: operation name → the request, made with a caller's client.
REQUESTS: dict[str, Callable[[Any, Target], Any]] = {
    "Decrypt without Recipient": lambda c, t: c.decrypt(CiphertextBlob=t.blob, EncryptionContext=CONTEXT),
    "CreateGrant": lambda c, t: c.create_grant(
        KeyId=t.key, GranteePrincipal=INSTANCE_ROLE, Operations=["Decrypt"], DryRun=True
    ),
    "ReEncrypt from the vault key": lambda c, t: c.re_encrypt(
        CiphertextBlob=t.blob, SourceEncryptionContext=CONTEXT, DestinationKeyId=t.own_key, DryRun=True
    ),
    "ReEncrypt to the vault key": lambda c, t: c.re_encrypt(
        CiphertextBlob=t.own_blob, DestinationKeyId=t.key, DryRun=True
    ),
    "Encrypt": lambda c, t: c.encrypt(KeyId=t.key, Plaintext=b"x", EncryptionContext=CONTEXT, DryRun=True),
    "GenerateDataKey": lambda c, t: c.generate_data_key(
        KeyId=t.key, KeySpec="AES_256", EncryptionContext=CONTEXT, DryRun=True
    ),
    "GenerateDataKeyWithoutPlaintext": lambda c, t: c.generate_data_key_without_plaintext(
        KeyId=t.key, KeySpec="AES_256", EncryptionContext=CONTEXT, DryRun=True
    ),
    "GenerateDataKeyPair": lambda c, t: c.generate_data_key_pair(
        KeyId=t.key, KeyPairSpec="ECC_NIST_P384", EncryptionContext=CONTEXT, DryRun=True
    ),
    "PutKeyPolicy": lambda c, t: c.put_key_policy(
        KeyId=t.key,
        PolicyName="default",
        Policy=json.dumps(key_policy(admin_role_arn=ADMIN_ROLE)),
        BypassPolicyLockoutSafetyCheck=False,
    ),
    "Decrypt with Recipient": lambda c, t: c.decrypt(
        CiphertextBlob=t.blob,
        EncryptionContext=CONTEXT,
        Recipient={"AttestationDocument": t.document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
        DryRun=True,
    ),
}
#: Who may: everything else is refused to everyone.
ALLOWED = {
    ("instance", "Decrypt with Recipient"),
    ("instance-session", "Decrypt with Recipient"),
    ("administrator", "PutKeyPolicy"),
}


def outcome(target: Target, caller: Caller, request: Callable[[Any, Target], Any]) -> str:
    try:
        request(client_of(target, caller), target)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "carried out"


def test_only_the_attested_instance_decrypts_and_only_the_administrator_changes_the_policy(
    target: Target,
) -> None:
    answers = {
        (caller.name, name): outcome(target, caller, request)
        for caller in CALLERS
        for name, request in REQUESTS.items()
    }
    allowed = {
        cell for cell, answer in answers.items() if answer in ("DryRunOperationException", "carried out")
    }
    refused = {answer for cell, answer in answers.items() if cell not in allowed}
    assert allowed == ALLOWED, answers
    assert refused == {"AccessDeniedException"}, answers
