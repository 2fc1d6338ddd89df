"""Blind-index tokens, through the enclave's request handler, against an independent computation.

Properties: equal values give equal tokens within one field (however they were sealed);
a token is never a plain digest of the value; the same value has unrelated tokens in two
fields and in two deployments. The reference is written from the design (HKDF-SHA256
then HMAC-SHA256), with ``hmac`` and ``cryptography``'s HKDF, not the project's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from tests.support.authorization import LocalSigner
from tests.support.enclave_keys import TEST_CREDENTIAL, LocalKeyDecryptor, VaultKey
from vault.common.authorization import AuthorizationVerifier, Grant, authorizer_digest, sign
from vault.common.blind_index import INDEX_KEY_ID, sealed_digest
from vault.enclave.handler import RequestHandler

NOW = 1_800_000_000
API = LocalSigner()
DECRYPTOR = LocalKeyDecryptor()
HANDLER = RequestHandler(DECRYPTOR, authorizer=AuthorizationVerifier(clock=lambda: float(NOW)))
#: Two deployments: each its own index key pair and deployment id.
DEPLOYMENTS = {
    "Aaaaaaaaaaaaaaaaaaaaaa": DECRYPTOR.create_vault_key(
        INDEX_KEY_ID, authorizer=authorizer_digest(API.public_key)
    ),
    "Bbbbbbbbbbbbbbbbbbbbbb": DECRYPTOR.create_vault_key(
        INDEX_KEY_ID, authorizer=authorizer_digest(API.public_key)
    ),
}
_REQUEST_IDS = itertools.count()

ssns = st.text(alphabet="0123456789", min_size=9, max_size=9)
emails = st.builds(
    lambda local, domain: f"{local}@{domain}.example",
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", min_size=1, max_size=20
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
)


def _private_key(key: VaultKey) -> bytes:
    return DECRYPTOR.decrypt_private_key(
        ciphertext=key.encrypted_private_key,
        vault_id=INDEX_KEY_ID,
        region="us-east-1",
        credential=TEST_CREDENTIAL,
        authorizer=authorizer_digest(API.public_key),
    )


def reference_token(private_key: bytes, deployment: str, field: str, value: str) -> str:
    info = b"nitro-vault blind-index v1\x00" + deployment.encode() + b"\x00" + field.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(private_key)
    normalized = value.strip().lower() if field == "email" else value.strip()
    mac = hmac.new(key, normalized.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def tokens(deployment: str, values: dict[str, str]) -> dict[str, str]:
    """What the enclave answers to an authorized index request for ``values``."""
    key = DEPLOYMENTS[deployment]
    fields = {name: key.seal_field(name, value) for name, value in values.items()}
    parameters = {"deployment": deployment, "target": "search", "sealed_sha256": sealed_digest(fields)}
    grant = Grant.for_request(
        vault_id=INDEX_KEY_ID,
        fields=list(fields),
        expressions={},
        request_id=f"prop-{next(_REQUEST_IDS)}",
        issued_at=NOW,
        operation="index",
        parameters=parameters,
    )
    request = key.request(fields, authorization=sign(grant, API).to_wire())
    request = request.model_copy(
        update={
            "request": request.request.model_copy(update={"operation": "index", "parameters": parameters})
        }
    )
    reply = HANDLER.handle(json.dumps(request.to_wire()).encode())
    assert reply.fields is not None, reply.errors
    return dict(reply.fields)


def plain_digests(value: str) -> set[str]:
    raw = value.encode()
    digest = hashlib.sha256(raw).digest()
    return {
        digest.hex(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(hmac.new(b"", raw, hashlib.sha256).digest()).decode().rstrip("="),
    }


@given(ssn=ssns, email=emails)
def test_tokens_are_the_reference_digests(ssn: str, email: str) -> None:
    for deployment, key in DEPLOYMENTS.items():
        private_key = _private_key(key)
        answered = tokens(deployment, {"ssn9": ssn, "email": email})
        assert answered == {
            "ssn9": reference_token(private_key, deployment, "ssn9", ssn),
            "email": reference_token(private_key, deployment, "email", email),
        }


@given(ssn=ssns)
def test_equal_values_give_equal_tokens_within_a_field(ssn: str) -> None:
    # Sealed twice (fresh HPKE encapsulations), asked twice: one token.
    assert tokens("Aaaaaaaaaaaaaaaaaaaaaa", {"ssn9": ssn}) == tokens("Aaaaaaaaaaaaaaaaaaaaaa", {"ssn9": ssn})


@given(first=ssns, second=ssns)
def test_different_values_give_different_tokens(first: str, second: str) -> None:
    same = tokens("Aaaaaaaaaaaaaaaaaaaaaa", {"ssn9": first}) == tokens(
        "Aaaaaaaaaaaaaaaaaaaaaa", {"ssn9": second}
    )
    assert same == (first == second)


@given(email=emails)
def test_e_mail_case_does_not_change_the_token(email: str) -> None:
    deployment = "Aaaaaaaaaaaaaaaaaaaaaa"
    assert tokens(deployment, {"email": email}) == tokens(deployment, {"email": f"  {email.upper()} "})


@given(value=ssns)
def test_no_token_is_a_plain_digest(value: str) -> None:
    for deployment in DEPLOYMENTS:
        for token in tokens(deployment, {"ssn9": value, "email": f"{value}@x.example"}).values():
            assert token not in plain_digests(value) | plain_digests(f"{value}@x.example")


@given(value=ssns)
def test_tokens_reveal_no_equality_across_fields_or_deployments(value: str) -> None:
    """The same text in two fields, or in two deployments, has unrelated tokens."""
    email = f"{value}@x.example"
    answered = {
        (deployment, field): token
        for deployment in DEPLOYMENTS
        for field, token in tokens(deployment, {"ssn9": value, "email": email}).items()
    }
    assert len(set(answered.values())) == len(answered) == 4
    # Even with the deployment id alone changed, under the same key the tokens differ.
    private_key = _private_key(DEPLOYMENTS["Aaaaaaaaaaaaaaaaaaaaaa"])
    assert reference_token(private_key, "Aaaaaaaaaaaaaaaaaaaaaa", "ssn9", value) != reference_token(
        private_key, "Cccccccccccccccccccccc", "ssn9", value
    )
