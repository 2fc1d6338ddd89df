"""The KMS front's error answers against LocalStack's, request for request.

Each case sends one request twice: through the KMS front (with the instance role's
credentials from IMDS, as the parent instance would) and straight to LocalStack (with
its test keys). Both must answer the same ``__type``. The front's message must be AWS's
text (:mod:`emulator.aws.kms.errors`); where LocalStack writes the same text, the two
answers are therefore equal too, and where LocalStack's text differs from AWS's the
case says how.

The keys are the test's own, created on LocalStack, never the vault's. Their key policy
allows everyone everything, so the front's policy evaluation lets every request reach
the check whose answer is compared.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.aws.kms import errors
from emulator.daemon.state import EmulatorState
from vault.parent.imds import ImdsClient

pytestmark = [pytest.mark.e2e, pytest.mark.localstack]

ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}],
    }
)
CONTEXT = {"purpose": "parity"}
PAIR_SPEC = "RSA_2048"


@dataclass(frozen=True)
class Keys:
    """The test's keys on LocalStack, with a ciphertext of each under :data:`CONTEXT`."""

    enabled: str
    other: str
    disabled: str
    pending_deletion: str
    enabled_ciphertext: bytes
    disabled_ciphertext: bytes
    pending_ciphertext: bytes


@dataclass(frozen=True)
class Clients:
    front: Any
    localstack: Any
    region: str
    account: str


@pytest.fixture(scope="module")
def clients(stack: EmulatorState) -> Clients:
    if stack.backend != "localstack":
        pytest.skip(f"compares with LocalStack; this stack's backend is {stack.backend}")
    facts = stack.facts
    region = str(facts["region"])
    instance = asyncio.run(ImdsClient(str(facts["imds_endpoint"])).fetch()).credential
    front = boto3.client(
        "kms",
        endpoint_url=str(facts["kms_endpoint"]),
        region_name=region,
        aws_access_key_id=instance.access_key_id.get_secret_value(),
        aws_secret_access_key=instance.secret_access_key.get_secret_value(),
        aws_session_token=instance.token.get_secret_value(),
    )
    localstack = boto3.client(
        "kms",
        endpoint_url=str(facts["backend_endpoint"]),
        region_name=region,
        aws_access_key_id=str(facts["backend_access_key_id"]),
        aws_secret_access_key=str(facts["backend_secret_access_key"]),
    )
    return Clients(front, localstack, region, str(facts["account_id"]))


@pytest.fixture(scope="module")
def keys(clients: Clients) -> Iterator[Keys]:
    kms = clients.localstack

    def new_key(description: str) -> tuple[str, bytes]:
        arn = str(kms.create_key(Description=description, Policy=ALLOW_ALL)["KeyMetadata"]["Arn"])
        sealed = kms.encrypt(KeyId=arn, Plaintext=b"parity", EncryptionContext=CONTEXT)
        return arn, bytes(sealed["CiphertextBlob"])

    enabled, enabled_ciphertext = new_key("parity enabled")
    other, _ = new_key("parity other")
    disabled, disabled_ciphertext = new_key("parity disabled")
    pending, pending_ciphertext = new_key("parity pending deletion")
    kms.disable_key(KeyId=disabled)
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)
    yield Keys(enabled, other, disabled, pending, enabled_ciphertext, disabled_ciphertext, pending_ciphertext)
    for arn in (enabled, other, disabled):
        kms.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)


@dataclass(frozen=True)
class Case:
    """One request, the error type AWS answers it with, and AWS's message text."""

    name: str
    call: Callable[[Any, Keys, Clients], Any]
    error_type: str
    aws_message: Callable[[Keys, Clients], str]
    #: How LocalStack's text differs from AWS's; ``None``: it is AWS's.
    localstack_differs: str | None = None


def aws_text(kind: errors.ErrorType, **fields: str) -> str:
    """AWS's message for an error of ``kind`` about ``fields``."""
    assert kind.template is not None, f"{kind.name} has no fixed text"
    return kind.template.format(**fields)


def missing_key_arn(clients: Clients) -> str:
    return f"arn:aws:kms:{clients.region}:{clients.account}:key/{uuid.UUID(int=0x7A57)}"


def missing_alias(clients: Clients) -> str:
    return "alias/parity-missing"


def decrypt(ciphertext: Callable[[Keys], bytes], **extra: Any) -> Callable[[Any, Keys, Clients], Any]:
    def call(kms: Any, keys: Keys, clients: Clients) -> Any:
        arguments = {"CiphertextBlob": ciphertext(keys), "EncryptionContext": CONTEXT, **extra}
        key_id = arguments.pop("KeyId", None)
        if callable(key_id):
            arguments["KeyId"] = key_id(keys, clients)
        return kms.decrypt(**arguments)

    return call


def data_key_pair(key_id: Callable[[Keys, Clients], str]) -> Callable[[Any, Keys, Clients], Any]:
    def call(kms: Any, keys: Keys, clients: Clients) -> Any:
        return kms.generate_data_key_pair(KeyId=key_id(keys, clients), KeyPairSpec=PAIR_SPEC)

    return call


CASES = [
    Case(
        "wrong encryption context",
        decrypt(lambda k: k.enabled_ciphertext, EncryptionContext={"purpose": "other"}),
        "InvalidCiphertextException",
        lambda k, c: aws_text(errors.INVALID_CIPHERTEXT),
    ),
    Case(
        "invalid ciphertext blob",
        decrypt(lambda k: base64.b64decode("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAh")),
        "InvalidCiphertextException",
        lambda k, c: aws_text(errors.INVALID_CIPHERTEXT),
        # LocalStack: "LocalStack is unable to deserialize the ciphertext blob. Perhaps the
        # blob didn't come from LocalStack"; AWS answers without a message.
        localstack_differs="a text of its own",
    ),
    Case(
        "Decrypt naming another key",
        decrypt(lambda k: k.enabled_ciphertext, KeyId=lambda k, c: k.other),
        "IncorrectKeyException",
        lambda k, c: aws_text(errors.INCORRECT_KEY),
    ),
    Case(
        "Decrypt naming a missing key ARN",
        decrypt(lambda k: k.enabled_ciphertext, KeyId=lambda k, c: missing_key_arn(c)),
        "NotFoundException",
        lambda k, c: aws_text(errors.KEY_NOT_FOUND, key_arn=missing_key_arn(c)),
    ),
    Case(
        "missing key ARN",
        data_key_pair(lambda k, c: missing_key_arn(c)),
        "NotFoundException",
        lambda k, c: aws_text(errors.KEY_NOT_FOUND, key_arn=missing_key_arn(c)),
    ),
    Case(
        "missing key id",
        data_key_pair(lambda k, c: missing_key_arn(c).rsplit("/", 1)[1]),
        "NotFoundException",
        # AWS names the key by its ARN even when asked by its id.
        lambda k, c: aws_text(errors.KEY_NOT_FOUND, key_arn=missing_key_arn(c)),
    ),
    Case(
        "malformed key id",
        data_key_pair(lambda k, c: "not-a-key-id"),
        "NotFoundException",
        lambda k, c: aws_text(errors.INVALID_KEY_ID, key="not-a-key-id"),
        # LocalStack quotes the id: "Invalid keyId 'not-a-key-id'".
        localstack_differs="quotes the id",
    ),
    Case(
        "missing alias",
        data_key_pair(lambda k, c: missing_alias(c)),
        "NotFoundException",
        lambda k, c: aws_text(
            errors.ALIAS_NOT_FOUND, alias_arn=f"arn:aws:kms:{c.region}:{c.account}:{missing_alias(c)}"
        ),
        # LocalStack: "Unable to find KMS alias with name alias/parity-missing" (AWS names the
        # alias by its ARN).
        localstack_differs="names the alias by its name, in a text of its own",
    ),
    Case(
        "Encrypt under a missing alias",
        lambda kms, k, c: kms.encrypt(KeyId=missing_alias(c), Plaintext=b"parity"),
        "NotFoundException",
        lambda k, c: aws_text(
            errors.ALIAS_NOT_FOUND, alias_arn=f"arn:aws:kms:{c.region}:{c.account}:{missing_alias(c)}"
        ),
        localstack_differs="names the alias by its name, in a text of its own",
    ),
    Case(
        "disabled key",
        data_key_pair(lambda k, c: k.disabled),
        "DisabledException",
        lambda k, c: aws_text(errors.DISABLED, key_arn=k.disabled),
    ),
    Case(
        "Decrypt under a disabled key",
        decrypt(lambda k: k.disabled_ciphertext),
        "DisabledException",
        lambda k, c: aws_text(errors.DISABLED, key_arn=k.disabled),
    ),
    Case(
        "key pending deletion",
        data_key_pair(lambda k, c: k.pending_deletion),
        "KMSInvalidStateException",
        lambda k, c: aws_text(errors.PENDING_DELETION, key_arn=k.pending_deletion),
    ),
    Case(
        "Decrypt under a key pending deletion",
        decrypt(lambda k: k.pending_ciphertext),
        "KMSInvalidStateException",
        lambda k, c: aws_text(errors.PENDING_DELETION, key_arn=k.pending_deletion),
    ),
]


def answer_of(kms: Any, case: Case, keys: Keys, clients: Clients) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        case.call(kms, keys, clients)
    error = refused.value.response["Error"]
    return str(error["Code"]), str(error.get("Message", ""))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_front_answers_as_localstack_and_aws(case: Case, clients: Clients, keys: Keys) -> None:
    front = answer_of(clients.front, case, keys, clients)
    localstack = answer_of(clients.localstack, case, keys, clients)
    aws_message = case.aws_message(keys, clients)

    assert localstack[0] == case.error_type, localstack
    assert front[0] == localstack[0], (front, localstack)
    assert front[1] == aws_message, (front, aws_message)
    if case.localstack_differs is None:
        assert front[1] == localstack[1], (front, localstack)
    else:
        assert localstack[1] != aws_message, f"LocalStack now answers AWS's text: {localstack}"
