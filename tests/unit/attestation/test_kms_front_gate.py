"""The KMS front's operation table, key states and error answers, on loopback in front of moto.

The attacks of issue 16 point 3 are replayed with the instance role's credentials (what
any process on the parent instance can read from IMDS): a key of the attacker's own with
an allow-all policy, the vault's encrypted private key re-encrypted to it, a grant on the
vault key. Error answers are compared with moto's where moto implements the operation;
where moto differs from AWS, the front follows AWS (see :mod:`emulator.aws.kms.errors`).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from emulator.aws.kms import errors
from emulator.aws.kms.front import Identity
from emulator.aws.kms.key_states import KeyInfo, KeyUse, check_state
from emulator.aws.kms.operations import OPERATIONS, Treatment
from emulator.nitro.pki import TestPki

from .conftest import ACCOUNT, API_ROLE, INSTANCE_ROLE, Harness, key_policy, kms_client
from .test_kms_front import good_document, spki

ADMIN_KEY = "ASIAKEYADMIN00000001"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT}:role/vault-key-admin"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}],
}


def answer_of(call: Callable[[], Any]) -> tuple[str, str]:
    """``(Error.Code, Error.Message)`` of a refused call."""
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    return str(error["Code"]), str(error.get("Message", ""))


def assert_denied(answer: tuple[str, str], principal: str, action: str, key_arn: str) -> None:
    """AWS's answer when no statement of the key policy allows ``action``, or one denies it."""
    texts = {errors.access_denied(principal, action, key_arn, explicit=e).message for e in (False, True)}
    assert answer[0] == "AccessDeniedException"
    assert answer[1] in texts


@pytest.fixture
def fronted_key(harness: Harness, moto_url: str) -> Iterator[str]:
    """A fresh key of its own with the vault key policy on the front (its state may be changed)."""
    key = str(kms_client(moto_url).create_key(Description="fronted")["KeyMetadata"]["Arn"])
    harness.stack.front.set_key_policy(key, key_policy(admin_role_arn=ADMIN_ROLE))
    # The key administrator of these tests: its IAM policy allows the key's life cycle.
    harness.stack.front.add_identity(
        ADMIN_KEY,
        Identity(
            ADMIN_ROLE,
            iam_allowed_actions=(
                "kms:DisableKey",
                "kms:EnableKey",
                "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion",
            ),
        ),
    )
    yield key


def key_id(key_arn: str) -> str:
    """moto's DisableKey, EnableKey and (Cancel|Schedule)KeyDeletion take key ids only (an ARN: 500)."""
    return key_arn.rsplit("/", 1)[-1]


def admin_client(harness: Harness) -> Any:
    return kms_client(harness.front_url, ADMIN_KEY, "s", attempts=1)


def iam_admin_client(harness: Harness) -> Any:
    """A caller whose IAM policy allows it every KMS action (keys with the default key policy)."""
    harness.stack.front.add_identity(
        "ASIAIAMKMSALL0000001",
        Identity(f"arn:aws:iam::{ACCOUNT}:role/kms-user", iam_allowed_actions=("kms:*",)),
    )
    return kms_client(harness.front_url, "ASIAIAMKMSALL0000001", "s", attempts=1)


# -- the attacks of issue 16 point 3 -------------------------------------------------------


def test_reencrypting_the_vault_key_to_an_attackers_key_is_refused(harness: Harness, moto_url: str) -> None:
    pair = harness.new_vault_key("v_rewrap")
    blob, context = pair["PrivateKeyCiphertextBlob"], {"vault_id": "v_rewrap"}
    attacker = kms_client(harness.front_url, "ASIAINSTANCE00000001", "instance-secret", attempts=1)
    # Step 1 succeeds: a key of one's own is no fronted key.
    own = attacker.create_key(Policy=json.dumps(ALLOW_ALL), Description="attacker")["KeyMetadata"]["Arn"]
    # Step 2 fails: the vault key's policy allows nobody kms:ReEncryptFrom.
    refused = answer_of(
        lambda: attacker.re_encrypt(
            CiphertextBlob=blob, SourceEncryptionContext=context, DestinationKeyId=own
        )
    )
    assert_denied(refused, INSTANCE_ROLE, "kms:ReEncryptFrom", harness.key_arn)
    # The API role fares no better, with or without naming the source key.
    api_refused = answer_of(
        lambda: harness.api_client().re_encrypt(
            CiphertextBlob=blob,
            SourceEncryptionContext=context,
            SourceKeyId=harness.key_arn,
            DestinationKeyId=own,
        )
    )
    assert_denied(api_refused, API_ROLE, "kms:ReEncryptFrom", harness.key_arn)
    # moto on its own port would have done it: the front is what stops it.
    rewrapped = kms_client(moto_url).re_encrypt(
        CiphertextBlob=blob, SourceEncryptionContext=context, DestinationKeyId=own
    )
    assert rewrapped["KeyId"] == own


def test_reencrypting_to_the_vault_key_is_refused(harness: Harness) -> None:
    attacker = harness.instance_client()
    own = attacker.create_key(Policy=json.dumps(ALLOW_ALL))["KeyMetadata"]["Arn"]
    blob = attacker.encrypt(KeyId=own, Plaintext=b"chosen")["CiphertextBlob"]
    refused = answer_of(lambda: attacker.re_encrypt(CiphertextBlob=blob, DestinationKeyId=harness.key_arn))
    assert_denied(refused, INSTANCE_ROLE, "kms:ReEncryptTo", harness.key_arn)


def test_reencryption_between_keys_the_front_does_not_front_is_carried_out(harness: Harness) -> None:
    client = iam_admin_client(harness)
    first = client.create_key()["KeyMetadata"]["Arn"]
    second = client.create_key()["KeyMetadata"]["Arn"]
    blob = client.encrypt(KeyId=first, Plaintext=b"payload", EncryptionContext={"a": "1"})["CiphertextBlob"]
    moved = client.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"a": "1"},
        DestinationKeyId=second,
        DestinationEncryptionContext={"b": "2"},
    )
    assert (moved["SourceKeyId"], moved["KeyId"]) == (first, second)
    opened = client.decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"b": "2"})
    assert (opened["Plaintext"], opened["KeyId"]) == (b"payload", second)


def test_a_grant_on_the_vault_key_is_refused(harness: Harness, moto_url: str) -> None:
    for client, principal in ((harness.instance_client(), INSTANCE_ROLE), (harness.api_client(), API_ROLE)):
        refused = answer_of(
            partial(
                client.create_grant, KeyId=harness.key_arn, GranteePrincipal=principal, Operations=["Decrypt"]
            )
        )
        assert_denied(refused, principal, "kms:CreateGrant", harness.key_arn)
    assert kms_client(moto_url).list_grants(KeyId=harness.key_arn)["Grants"] == []


@pytest.mark.parametrize(
    ("operation", "action", "arguments"),
    [
        ("put_key_policy", "kms:PutKeyPolicy", {"PolicyName": "default", "Policy": json.dumps(ALLOW_ALL)}),
        (
            "generate_data_key",
            "kms:GenerateDataKey",
            {"KeySpec": "AES_256", "EncryptionContext": {"vault_id": "v"}},
        ),
        ("generate_data_key_pair", "kms:GenerateDataKeyPair", {"KeyPairSpec": "ECC_NIST_P384"}),
        (
            "generate_data_key_without_plaintext",
            "kms:GenerateDataKeyWithoutPlaintext",
            {"KeySpec": "AES_256"},
        ),
        ("encrypt", "kms:Encrypt", {"Plaintext": b"chosen", "EncryptionContext": {"vault_id": "v"}}),
        ("schedule_key_deletion", "kms:ScheduleKeyDeletion", {"PendingWindowInDays": 7}),
        ("disable_key", "kms:DisableKey", {}),
    ],
)
def test_the_vault_key_policy_decides_every_forwarded_operation(
    harness: Harness, moto_url: str, operation: str, action: str, arguments: dict[str, Any]
) -> None:
    for client, principal in ((harness.instance_client(), INSTANCE_ROLE), (harness.api_client(), API_ROLE)):
        call = getattr(client, operation)
        refused = answer_of(partial(call, KeyId=harness.key_arn, **arguments))
        assert_denied(refused, principal, action, harness.key_arn)
    # Nothing reached the backend: the key is as it was.
    metadata = kms_client(moto_url).describe_key(KeyId=harness.key_arn)["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled"


def test_the_policy_is_found_for_an_alias_of_the_vault_key(harness: Harness, moto_url: str) -> None:
    alias = f"alias/vault-{time.time_ns()}"
    kms_client(moto_url).create_alias(AliasName=alias, TargetKeyId=harness.key_arn)
    refused = answer_of(lambda: harness.instance_client().encrypt(KeyId=alias, Plaintext=b"x"))
    assert_denied(refused, INSTANCE_ROLE, "kms:Encrypt", harness.key_arn)
    refused = answer_of(lambda: harness.instance_client().delete_alias(AliasName=alias))
    assert_denied(refused, INSTANCE_ROLE, "kms:DeleteAlias", harness.key_arn)


def test_decrypt_without_recipient_is_refused_to_every_caller(harness: Harness) -> None:
    blob = harness.new_vault_key("v_plain")["PrivateKeyCiphertextBlob"]
    for client, principal in ((harness.instance_client(), INSTANCE_ROLE), (harness.api_client(), API_ROLE)):
        refused = answer_of(
            partial(client.decrypt, CiphertextBlob=blob, EncryptionContext={"vault_id": "v_plain"})
        )
        assert_denied(refused, principal, "kms:Decrypt", harness.key_arn)


# -- what is refused before any key is looked at --------------------------------------------


def raw_post(
    harness: Harness, path: str, target: str | None, body: bytes = b"{}"
) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", harness.stack.front.port, timeout=5)
    try:
        headers = {"Content-Type": "application/x-amz-json-1.1", "Content-Length": str(len(body))}
        if target is not None:
            headers["X-Amz-Target"] = target
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/", "TrentService.NoSuchOperation"),
        ("/", None),
        ("/", "DynamoDB_20120810.ListTables"),
        ("/moto-api/reset", "TrentService.ListKeys"),
    ],
)
def test_unknown_operations_and_paths_are_refused(harness: Harness, path: str, target: str | None) -> None:
    status, answer = raw_post(harness, path, target)
    assert (status, answer["__type"]) == (400, "UnknownOperationException")


def test_a_get_never_reaches_the_backend(harness: Harness) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", harness.stack.front.port, timeout=5)
    try:
        connection.request("GET", "/moto-api/data.json")
        response = connection.getresponse()
        assert response.status == 400
        assert json.loads(response.read())["__type"] == "UnknownOperationException"
    finally:
        connection.close()


def test_forwarded_operations_need_a_known_caller(harness: Harness) -> None:
    stranger = kms_client(harness.front_url, "AKIASTRANGER00000001", "s", attempts=1)
    assert answer_of(stranger.list_keys) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )
    status, answer = raw_post(harness, "/", "TrentService.ListKeys")
    assert (status, answer["__type"]) == (400, "MissingAuthenticationTokenException")


def test_every_kms_operation_has_a_treatment() -> None:
    model = botocore.session.get_session().get_service_model("kms")
    assert set(OPERATIONS) == set(model.operation_names)
    implemented = {name for name, op in OPERATIONS.items() if op.treatment is Treatment.IMPLEMENTED}
    assert implemented == {
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "DeriveSharedSecret",
    }
    with_recipient = {name for name, op in OPERATIONS.items() if op.takes_recipient}
    shapes = {name: model.operation_model(name).input_shape for name in model.operation_names}
    assert with_recipient == {
        name for name, shape in shapes.items() if shape is not None and "Recipient" in shape.members
    }
    for name, op in OPERATIONS.items():
        if op.treatment is Treatment.GATED:
            shape = model.operation_model(name).input_shape
            assert shape is not None and op.key_member in shape.members, name


# -- key states ----------------------------------------------------------------------------


def attested_decrypt(harness: Harness, pki: TestPki, rsa_key: Any, blob: bytes, vault_id: str) -> Any:
    return harness.instance_client().decrypt(
        CiphertextBlob=blob,
        EncryptionContext={"vault_id": vault_id},
        Recipient={"AttestationDocument": good_document(pki, spki(rsa_key))},
    )


def new_pair(harness: Harness, key: str, vault_id: str) -> dict[str, Any]:
    pair: dict[str, Any] = harness.api_client().generate_data_key_pair_without_plaintext(
        KeyId=key, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": vault_id}
    )
    return pair


def test_a_disabled_key_refuses_every_path_until_enabled_again(
    harness: Harness, fronted_key: str, pki: TestPki, rsa_key: Any
) -> None:
    blob = new_pair(harness, fronted_key, "v_state")["PrivateKeyCiphertextBlob"]
    admin = admin_client(harness)
    admin.disable_key(KeyId=key_id(fronted_key))  # through the front: its state cache is dropped at once
    disabled = ("DisabledException", f"{fronted_key} is disabled.")
    assert answer_of(lambda: attested_decrypt(harness, pki, rsa_key, blob, "v_state")) == disabled
    assert answer_of(lambda: new_pair(harness, fronted_key, "v_state2")) == disabled
    # ReEncrypt, which the front carries out itself, honours states on keys it does not front too.
    own = harness.instance_client().create_key()["KeyMetadata"]["Arn"]
    sealed = harness.instance_client().encrypt(KeyId=own, Plaintext=b"x")["CiphertextBlob"]
    admin.disable_key(KeyId=key_id(own))
    assert answer_of(
        lambda: harness.instance_client().re_encrypt(CiphertextBlob=sealed, DestinationKeyId=own)
    ) == ("DisabledException", f"{own} is disabled.")
    admin.enable_key(KeyId=key_id(fronted_key))
    assert "CiphertextForRecipient" in attested_decrypt(harness, pki, rsa_key, blob, "v_state")


def test_a_key_pending_deletion_refuses_every_path(
    harness: Harness, fronted_key: str, pki: TestPki, rsa_key: Any
) -> None:
    blob = new_pair(harness, fronted_key, "v_deleted")["PrivateKeyCiphertextBlob"]
    admin = admin_client(harness)
    admin.schedule_key_deletion(KeyId=key_id(fronted_key), PendingWindowInDays=7)
    pending = ("KMSInvalidStateException", f"{fronted_key} is pending deletion.")
    assert answer_of(lambda: attested_decrypt(harness, pki, rsa_key, blob, "v_deleted")) == pending
    assert answer_of(lambda: new_pair(harness, fronted_key, "v_deleted2")) == pending
    assert answer_of(lambda: admin.disable_key(KeyId=key_id(fronted_key))) == pending
    admin.cancel_key_deletion(KeyId=key_id(fronted_key))  # as on AWS, the key is then disabled
    assert answer_of(lambda: admin.cancel_key_deletion(KeyId=key_id(fronted_key))) == (
        "KMSInvalidStateException",
        f"{fronted_key} is not pending deletion.",
    )
    assert answer_of(lambda: attested_decrypt(harness, pki, rsa_key, blob, "v_deleted")) == (
        "DisabledException",
        f"{fronted_key} is disabled.",
    )


def test_a_state_changed_behind_the_front_is_seen_within_the_cache_lifetime(
    harness: Harness, fronted_key: str, moto_url: str
) -> None:
    harness.stack.front.keys.ttl = 0.2
    new_pair(harness, fronted_key, "v_behind")  # the state is cached now
    kms_client(moto_url).disable_key(KeyId=key_id(fronted_key))
    deadline = time.monotonic() + 5
    answer: tuple[str, str] = ("", "")
    while time.monotonic() < deadline:
        try:
            new_pair(harness, fronted_key, "v_behind")
        except ClientError as exc:
            answer = (str(exc.response["Error"]["Code"]), str(exc.response["Error"]["Message"]))
            break
        time.sleep(0.05)
    assert answer == ("DisabledException", f"{fronted_key} is disabled.")


@pytest.mark.parametrize(
    ("state", "use", "expected"),
    [
        ("Enabled", KeyUse.CRYPTOGRAPHIC, None),
        ("Disabled", KeyUse.CRYPTOGRAPHIC, ("DisabledException", "K is disabled.")),
        ("PendingDeletion", KeyUse.CRYPTOGRAPHIC, ("KMSInvalidStateException", "K is pending deletion.")),
        ("PendingImport", KeyUse.CRYPTOGRAPHIC, ("KMSInvalidStateException", "K is pending import.")),
        ("Disabled", KeyUse.NOT_PENDING_DELETION, None),
        (
            "PendingDeletion",
            KeyUse.NOT_PENDING_DELETION,
            ("KMSInvalidStateException", "K is pending deletion."),
        ),
        ("PendingDeletion", KeyUse.ANY, None),
        ("Enabled", KeyUse.PENDING_DELETION_ONLY, ("KMSInvalidStateException", "K is not pending deletion.")),
        ("PendingDeletion", KeyUse.PENDING_DELETION_ONLY, None),
        (None, KeyUse.CRYPTOGRAPHIC, None),
    ],
)
def test_the_key_state_table(state: str | None, use: KeyUse, expected: tuple[str, str] | None) -> None:
    try:
        check_state(KeyInfo("K", state), use)
        answer = None
    except errors.KmsError as exc:
        answer = (exc.error_type, exc.message)
    assert answer == expected


# -- the front's answers against moto's ----------------------------------------------------


def test_error_answers_match_moto_where_moto_matches_aws(harness: Harness, moto_url: str) -> None:
    """Same ``__type`` and text, for operations the front implements and moto does too."""
    front, moto = iam_admin_client(harness), kms_client(moto_url)
    key = moto.create_key()["KeyMetadata"]["Arn"]
    blob = moto.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"k": "v"})["CiphertextBlob"]
    missing_key = key.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    cases: dict[str, Callable[[Any], Any]] = {
        "wrong context": lambda c: c.decrypt(CiphertextBlob=blob, EncryptionContext={"k": "other"}),
        "no context": lambda c: c.decrypt(CiphertextBlob=blob),
        "re-encrypt, wrong context": lambda c: c.re_encrypt(
            CiphertextBlob=blob, SourceEncryptionContext={"k": "x"}, DestinationKeyId=key
        ),
        "re-encrypt to a missing key": lambda c: c.re_encrypt(
            CiphertextBlob=blob, SourceEncryptionContext={"k": "v"}, DestinationKeyId=missing_key
        ),
        "decrypt naming a missing key": lambda c: c.decrypt(
            CiphertextBlob=blob, EncryptionContext={"k": "v"}, KeyId=missing_key
        ),
        "decrypt naming a malformed key id": lambda c: c.decrypt(
            CiphertextBlob=blob, EncryptionContext={"k": "v"}, KeyId="not-a-key"
        ),
    }
    for name, call in cases.items():
        ours, theirs = answer_of(partial(call, front)), answer_of(partial(call, moto))
        assert ours == theirs, name
    assert answer_of(lambda: front.decrypt(CiphertextBlob=blob))[0] == "InvalidCiphertextException"
    assert answer_of(lambda: front.decrypt(CiphertextBlob=blob))[1] == ""  # AWS: no message


def test_where_moto_differs_from_aws_the_front_answers_as_aws(harness: Harness, moto_url: str) -> None:
    front, moto = iam_admin_client(harness), kms_client(moto_url)
    key = moto.create_key()["KeyMetadata"]["Arn"]
    other = moto.create_key()["KeyMetadata"]["Arn"]
    blob = moto.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    # A KeyId that is not the ciphertext's key: moto says AccessDeniedException, AWS IncorrectKeyException.
    incorrect = ("IncorrectKeyException", errors.INCORRECT_KEY.template)
    assert answer_of(lambda: front.decrypt(CiphertextBlob=blob, KeyId=other)) == incorrect
    assert answer_of(
        lambda: front.re_encrypt(CiphertextBlob=blob, SourceKeyId=other, DestinationKeyId=key)
    ) == (incorrect)
    assert answer_of(lambda: moto.decrypt(CiphertextBlob=blob, KeyId=other))[0] == "AccessDeniedException"
    # A ciphertext of no key the caller can reach: moto's AccessDeniedException has no message.
    assert answer_of(lambda: moto.decrypt(CiphertextBlob=b"\x00" * 80)) == ("AccessDeniedException", "")
    assert answer_of(lambda: front.decrypt(CiphertextBlob=b"\x00" * 80)) == (
        "AccessDeniedException",
        errors.CIPHERTEXT_KEY_UNKNOWN.template,
    )
    # A disabled key: moto still decrypts, AWS refuses.
    moto.disable_key(KeyId=key_id(key))
    assert moto.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    harness.stack.front.keys.invalidate()  # disabled behind the front: not to wait for the cache
    assert answer_of(lambda: front.decrypt(CiphertextBlob=blob)) == (
        "DisabledException",
        f"{key} is disabled.",
    )


def test_the_error_table_uses_the_types_the_kms_model_declares() -> None:
    model = botocore.session.get_session().get_service_model("kms")
    declared = {shape.name for shape in model.error_shapes}
    # Common errors every AWS JSON service answers with, not in the KMS model itself.
    common = {
        "AccessDeniedException",
        "ValidationException",
        "SerializationException",
        "UnknownOperationException",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ThrottlingException",
        "ServiceUnavailableException",
    }
    for name, kind in errors.ERROR_TYPES.items():
        assert kind.name in declared | common, name
    for required in (
        "AccessDeniedException",
        "InvalidCiphertextException",
        "IncorrectKeyException",
        "KMSInvalidStateException",
        "DisabledException",
        "NotFoundException",
        "ValidationException",
    ):
        assert required in {kind.name for kind in errors.ERROR_TYPES.values()}


def test_missing_members_are_named_as_aws_names_them(harness: Harness) -> None:
    front = harness.stack.front
    identity = Identity(API_ROLE)
    with pytest.raises(errors.KmsError) as refused:
        front.generate_data_key_pair_without_plaintext(identity, {"KeyPairSpec": "ECC_NIST_P384"})
    assert (refused.value.error_type, refused.value.message) == (
        "ValidationException",
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: "
        "Member must not be null",
    )
    with pytest.raises(errors.KmsError) as no_blob:
        front.re_encrypt(identity, {"DestinationKeyId": harness.key_arn})
    assert "Value null at 'ciphertextBlob'" in no_blob.value.message


def test_a_fronted_key_whose_policy_allows_an_operation_gets_it_forwarded(
    harness: Harness, moto_url: str
) -> None:
    moto = kms_client(moto_url)
    key = moto.create_key()["KeyMetadata"]["Arn"]
    harness.stack.front.set_key_policy(key, ALLOW_ALL)
    client = harness.instance_client()
    grant = {"KeyId": key, "GranteePrincipal": INSTANCE_ROLE, "Operations": ["Encrypt"]}
    code, _ = answer_of(lambda: client.create_grant(**grant, DryRun=True))
    assert code == "DryRunOperationException"  # answered by the front: moto would have granted
    assert moto.list_grants(KeyId=key)["Grants"] == []
    assert client.create_grant(**grant)["GrantId"]
    assert len(moto.list_grants(KeyId=key)["Grants"]) == 1
    # A policy that names only another principal refuses this one.
    harness.stack.front.set_key_policy(
        key,
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": API_ROLE}, "Action": "kms:*", "Resource": "*"},
            ],
        },
    )
    assert_denied(answer_of(lambda: client.create_grant(**grant)), INSTANCE_ROLE, "kms:CreateGrant", key)
    assert harness.api_client().encrypt(KeyId=key, Plaintext=b"x")["KeyId"] == key


def test_a_policy_the_administrator_puts_is_the_one_enforced_afterwards(
    harness: Harness, moto_url: str
) -> None:
    key = str(kms_client(moto_url).create_key()["KeyMetadata"]["Arn"])
    harness.stack.front.set_key_policy(key, key_policy(admin_role_arn=ADMIN_ROLE))
    harness.stack.front.add_identity(ADMIN_KEY, Identity(ADMIN_ROLE))
    instance = harness.instance_client()
    assert_denied(
        answer_of(lambda: instance.encrypt(KeyId=key, Plaintext=b"x")), INSTANCE_ROLE, "kms:Encrypt", key
    )
    admin_client(harness).put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(ALLOW_ALL))
    assert instance.encrypt(KeyId=key, Plaintext=b"x")["KeyId"] == key


def test_a_request_scoped_to_another_service_is_refused(harness: Harness) -> None:
    # moto picks the service by the signature's scope: a DynamoDB-scoped request must not pass,
    # even for a caller whose secret the front does not hold.
    signed = AWSRequest(
        method="POST",
        url=harness.front_url + "/",
        data=b"{}",
        headers={"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials("ASIAINSTANCE00000001", "s"), "dynamodb", "us-east-1").add_auth(signed)
    connection = http.client.HTTPConnection("127.0.0.1", harness.stack.front.port, timeout=5)
    try:
        connection.request("POST", "/", body=b"{}", headers=dict(signed.headers.items()))
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert (response.status, answer["__type"]) == (400, "InvalidSignatureException")
