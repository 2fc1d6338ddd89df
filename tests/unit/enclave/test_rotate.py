"""The enclave's ``rotate`` operation: every field re-sealed under the signed new key, or nothing.

The attacker here is the parent (or anyone who reaches the enclave's port): it holds a
vault's item and genuine authorizations the API signed for other requests, and wants
either plaintext or the fields sealed to a key of its own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.support.authorization import LocalSigner
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common import hpke, rotation
from vault.common.authorization import AuthorizationVerifier, Grant, authorizer_digest, sign
from vault.common.messages import EnclaveErrorCode, EnclaveReply, EnclaveRequest
from vault.common.sealing import field_aad
from vault.common.suites import DEFAULT_SUITE, P256_SHA256_AES256GCM, Suite
from vault.enclave.encoding import parse_field_value
from vault.enclave.handler import RequestHandler
from vault.enclave.operations import OPERATIONS
from vault.enclave.operations.rotate import RotateOperation

NOW = 1_800_000_000.0
VAULT = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
API = LocalSigner()
PERSON = {"first_name": "Ann Rotated", "ssn9": "123450987", "email": "ann@example.com"}


class NewKey:
    """The new key pair of a rotation (the API gets only its public half from KMS)."""

    def __init__(self, suite: Suite = DEFAULT_SUITE) -> None:
        self.suite = suite
        self.private = ec.generate_private_key(suite.kem_params.curve())
        self.public_der = self.private.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )

    def open(self, name: str, value: str) -> str:
        enc, ct = parse_field_value(value, self.suite)
        plaintext = hpke.Recipient(self.suite, self.private).open(enc, ct, VAULT.encode(), field_aad(name))
        return plaintext.decode()


@pytest.fixture
def decryptor() -> LocalKeyDecryptor:
    return LocalKeyDecryptor()


@pytest.fixture
def handler(decryptor: LocalKeyDecryptor) -> RequestHandler:
    return RequestHandler(decryptor, authorizer=AuthorizationVerifier(clock=lambda: NOW))


def _vault(decryptor: LocalKeyDecryptor) -> tuple[VaultKey, dict[str, str]]:
    key = decryptor.create_vault_key(VAULT, authorizer=authorizer_digest(API.public_key))
    return key, {name: key.seal_field(name, value) for name, value in PERSON.items()}


def _parameters(key: VaultKey, new: NewKey) -> tuple[dict[str, str], ec.EllipticCurvePrivateKey]:
    reply_private, reply_key = rotation.new_reply_key(key.suite)
    return {
        rotation.NEW_PUBLIC_KEY: base64.b64encode(new.public_der).decode(),
        rotation.NEW_SUITE_ID: new.suite.suite_id_b64,
        rotation.REPLY_KEY: reply_key,
    }, reply_private


def _request(
    key: VaultKey,
    fields: dict[str, str],
    *,
    operation: str | None = rotation.ROTATE_OPERATION,
    parameters: dict[str, str] | None = None,
    grant_operation: str | None = None,
    grant_parameters: dict[str, str] | None = None,
    expressions: dict[str, str] | None = None,
    request_id: str = "req-rotate-1",
) -> EnclaveRequest:
    """A request for ``operation`` with ``parameters``, authorized (by the API's key) for the grant's."""
    signed_operation = grant_operation if grant_operation is not None else (operation or "decrypt")
    signed_parameters = grant_parameters if grant_parameters is not None else parameters
    grant = Grant.for_request(
        vault_id=key.vault_id,
        fields=list(fields),
        expressions=expressions or {},
        request_id=request_id,
        issued_at=int(NOW),
        operation=signed_operation,
        parameters=signed_parameters,
    )
    base = key.request(fields, expressions=expressions, authorization=sign(grant, API).to_wire())
    request = base.request.model_copy(update={"operation": operation, "parameters": parameters})
    return EnclaveRequest(credential=base.credential, request=request)


def _send(handler: RequestHandler, request: EnclaveRequest) -> EnclaveReply:
    # Through the byte path the server uses.
    return handler.handle(json.dumps(request.to_wire()).encode("utf-8"))


def _assert_no_plaintext(reply: EnclaveReply) -> None:
    text = json.dumps(reply.to_wire())
    for value in PERSON.values():
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


def _assert_refused(reply: EnclaveReply, code: EnclaveErrorCode, detail: str) -> None:
    assert reply.fields is None, "nothing is answered"
    assert reply.code is code, reply
    assert detail in reply.errors[0], reply.errors
    _assert_no_plaintext(reply)


def test_rotate_is_registered() -> None:
    assert isinstance(OPERATIONS[rotation.ROTATE_OPERATION], RotateOperation)


@pytest.mark.parametrize("suite", [DEFAULT_SUITE, P256_SHA256_AES256GCM], ids=lambda s: s.name)
def test_the_handler_reseals_every_field_under_the_new_key(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, suite: Suite
) -> None:
    key, fields = _vault(decryptor)
    new = NewKey(suite)
    parameters, reply_private = _parameters(key, new)
    reply = _send(handler, _request(key, fields, parameters=parameters))
    assert reply.code is None and reply.errors == []
    assert reply.fields is not None
    answer = dict(reply.fields)
    proof = answer.pop(rotation.PROOF_KEY)
    assert set(answer) == set(PERSON)
    for name, value in answer.items():
        assert value != fields[name], "a new ciphertext"
        assert new.open(name, value) == PERSON[name]
    vault_public = hpke.load_public_key(key.suite, key.public_key)
    secret = rotation.api_secret(reply_private, vault_public)
    assert rotation.verify_proof(secret, VAULT, parameters[rotation.NEW_PUBLIC_KEY], answer, proof)
    _assert_no_plaintext(reply)
    assert decryptor.calls == 1


def test_the_proof_covers_every_value(handler: RequestHandler, decryptor: LocalKeyDecryptor) -> None:
    key, fields = _vault(decryptor)
    new = NewKey()
    parameters, reply_private = _parameters(key, new)
    reply = _send(handler, _request(key, fields, parameters=parameters))
    assert reply.fields is not None
    answer = dict(reply.fields)
    proof = answer.pop(rotation.PROOF_KEY)
    secret = rotation.api_secret(reply_private, hpke.load_public_key(key.suite, key.public_key))
    # What a parent would plant: a value of its choosing, sealed to the new public key it saw.
    planted = {
        **answer,
        "email": VaultKey(VAULT, new.suite, new.public_der, b"").seal_field("email", "x@evil"),
    }
    assert not rotation.verify_proof(secret, VAULT, parameters[rotation.NEW_PUBLIC_KEY], planted, proof)
    dropped = {name: value for name, value in answer.items() if name != "email"}
    assert not rotation.verify_proof(secret, VAULT, parameters[rotation.NEW_PUBLIC_KEY], dropped, proof)
    # A proof made for another reply key (another request) does not verify.
    other_private, _ = rotation.new_reply_key(key.suite)
    other = rotation.api_secret(other_private, hpke.load_public_key(key.suite, key.public_key))
    assert not rotation.verify_proof(other, VAULT, parameters[rotation.NEW_PUBLIC_KEY], answer, proof)


def test_legacy_hex_fields_are_resealed_in_the_binary_encoding(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, _ = _vault(decryptor)
    fields = {name: key.seal_field(name, value, legacy_hex=True) for name, value in PERSON.items()}
    new = NewKey()
    parameters, _ = _parameters(key, new)
    reply = _send(handler, _request(key, fields, parameters=parameters))
    assert reply.fields is not None
    for name in PERSON:
        value = reply.fields[name]
        assert "#" not in value
        assert new.open(name, value) == PERSON[name]


def test_a_decrypt_authorization_cannot_be_used_to_rotate(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    request = _request(key, fields, parameters=parameters, grant_operation="decrypt", grant_parameters={})
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "another operation")
    assert decryptor.calls == 0


def test_a_rotate_authorization_cannot_be_used_to_decrypt(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    request = _request(
        key,
        fields,
        operation=None,
        parameters=None,
        grant_operation=rotation.ROTATE_OPERATION,
        grant_parameters=parameters,
    )
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    assert decryptor.calls == 0


def test_a_substituted_new_public_key_is_refused(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    """The parent keeps the API's genuine rotate grant and swaps in its own public key."""
    key, fields = _vault(decryptor)
    signed, _ = _parameters(key, NewKey())
    attacker = NewKey()
    swapped = {**signed, rotation.NEW_PUBLIC_KEY: base64.b64encode(attacker.public_der).decode()}
    request = _request(key, fields, parameters=swapped, grant_parameters=signed)
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "other parameters")
    assert decryptor.calls == 0


def test_a_substituted_reply_key_is_refused(handler: RequestHandler, decryptor: LocalKeyDecryptor) -> None:
    """With its own reply key the parent could make the proof for an answer of its own."""
    key, fields = _vault(decryptor)
    signed, _ = _parameters(key, NewKey())
    _, own_reply_key = rotation.new_reply_key(key.suite)
    swapped = {**signed, rotation.REPLY_KEY: own_reply_key}
    request = _request(key, fields, parameters=swapped, grant_parameters=signed)
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "other parameters")
    assert decryptor.calls == 0


def test_a_field_that_does_not_open_fails_the_whole_rotation(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, fields = _vault(decryptor)
    # Another field's ciphertext: authentic, but bound to another name.
    fields = {**fields, "email": fields["first_name"]}
    parameters, _ = _parameters(key, NewKey())
    reply = _send(handler, _request(key, fields, parameters=parameters))
    _assert_refused(reply, EnclaveErrorCode.INVALID_CIPHERTEXT, "1 of 3 fields could not be opened")
    assert "[email]" in reply.errors[0]


def test_an_absent_field_fails_the_whole_rotation(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    request = _request(key, {**fields, "dob": "placeholder"}, parameters=parameters)
    wire: dict[str, Any] = request.to_wire()
    wire["request"]["fields"]["dob"] = None
    reply = handler.handle(json.dumps(wire).encode())
    _assert_refused(reply, EnclaveErrorCode.INVALID_CIPHERTEXT, "could not be opened")


def _without(parameters: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in parameters.items() if key != name}


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (lambda p: _without(p, rotation.NEW_PUBLIC_KEY), "needs the parameters new_public_key"),
        (lambda p: _without(p, rotation.REPLY_KEY), "needs the parameters reply_key"),
        (lambda p: {**p, "extra": "1"}, "takes no parameter extra"),
        (lambda p: {**p, rotation.NEW_SUITE_ID: "not base64!"}, "new_suite_id"),
        (lambda p: {**p, rotation.NEW_SUITE_ID: base64.b64encode(b"HPKE\x00\x99").decode()}, "unknown suite"),
        (lambda p: {**p, rotation.NEW_PUBLIC_KEY: "%%%"}, "new_public_key is not base64"),
        (
            lambda p: {
                **p,
                rotation.NEW_PUBLIC_KEY: base64.b64encode(NewKey(P256_SHA256_AES256GCM).public_der).decode(),
            },
            "is not a public key for",
        ),
        (lambda p: {**p, rotation.REPLY_KEY: base64.b64encode(b"\x04" + b"\x01" * 96).decode()}, "reply_key"),
    ],
    ids=[
        "no-public-key",
        "no-reply-key",
        "unknown-parameter",
        "suite-not-base64",
        "unknown-suite",
        "key-not-base64",
        "key-on-another-curve",
        "reply-key-not-a-point",
    ],
)
def test_unusable_parameters_are_refused_before_the_key_call(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, change: Any, detail: str
) -> None:
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    changed = change(parameters)
    # Signed as sent: the refusal is the operation's, not the authorization's.
    reply = _send(handler, _request(key, fields, parameters=changed))
    _assert_refused(reply, EnclaveErrorCode.INVALID_REQUEST, detail)
    assert decryptor.calls == 0


def test_an_unknown_operation_is_refused(handler: RequestHandler, decryptor: LocalKeyDecryptor) -> None:
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields, operation="rewrap", parameters={"x": "1"}))
    _assert_refused(reply, EnclaveErrorCode.INVALID_REQUEST, "unknown operation rewrap")
    assert decryptor.calls == 0


def test_expressions_with_rotate_are_refused(handler: RequestHandler, decryptor: LocalKeyDecryptor) -> None:
    """Expressions would run on the opened values; an operation answers no plaintext at all."""
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    request = _request(key, fields, parameters=parameters, expressions={"leak": "ssn9"})
    _assert_refused(_send(handler, request), EnclaveErrorCode.INVALID_REQUEST, "expressions are for decrypts")
    assert decryptor.calls == 0


def test_parameters_on_a_plain_decrypt_are_refused(
    handler: RequestHandler, decryptor: LocalKeyDecryptor
) -> None:
    key, fields = _vault(decryptor)
    parameters, _ = _parameters(key, NewKey())
    request = _request(key, fields, operation=None, parameters=parameters, grant_operation="decrypt")
    _assert_refused(
        _send(handler, request), EnclaveErrorCode.INVALID_REQUEST, "a decrypt takes no parameters"
    )
    assert decryptor.calls == 0


def test_without_a_verifier_rotate_still_answers_no_plaintext(decryptor: LocalKeyDecryptor) -> None:
    """An enclave run without the authorization check (a test deployment) re-seals all the same."""
    key = decryptor.create_vault_key(VAULT)
    fields = {name: key.seal_field(name, value) for name, value in PERSON.items()}
    new = NewKey()
    parameters, _ = _parameters(key, new)
    request = key.request(fields)
    request = EnclaveRequest(
        credential=request.credential,
        request=request.request.model_copy(
            update={"operation": rotation.ROTATE_OPERATION, "parameters": parameters}
        ),
    )
    reply = RequestHandler(decryptor).handle_request(request)
    assert reply.fields is not None
    assert {new.open(name, reply.fields[name]) for name in PERSON} == set(PERSON.values())
    _assert_no_plaintext(reply)
