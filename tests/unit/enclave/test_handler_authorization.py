"""The enclave reveals only under a fresh API authorization of exactly the request (decision D16)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.authorization import LocalSigner, authorize
from tests.support.enclave_keys import LocalKeyDecryptor, VaultKey
from vault.common.authorization import AuthorizationVerifier, authorizer_digest
from vault.common.messages import EnclaveErrorCode, EnclaveReply, EnclaveRequest
from vault.enclave.handler import RequestHandler

NOW = 1_800_000_000.0
VAULT = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
OTHER_VAULT = "v_3N1LaX92pADbWiWBIJw4cx87lXr"
API = LocalSigner()
PERSON = {"first_name": "Ann", "ssn9": "123456789"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class AdvancingDecryptor(LocalKeyDecryptor):
    """A key decryptor whose key call takes ``delay`` seconds of the test clock (a slow KMS)."""

    def __init__(self, clock: Clock, delay: float) -> None:
        super().__init__()
        self._clock = clock
        self.delay = delay

    def decrypt_private_key(self, **kwargs: Any) -> bytes:
        self._clock.now += self.delay
        return super().decrypt_private_key(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def decryptor(clock: Clock) -> AdvancingDecryptor:
    return AdvancingDecryptor(clock, delay=0.0)


@pytest.fixture
def handler(decryptor: AdvancingDecryptor, clock: Clock) -> RequestHandler:
    return RequestHandler(decryptor, authorizer=AuthorizationVerifier(clock=clock))


def _vault(decryptor: LocalKeyDecryptor, vault_id: str = VAULT) -> tuple[VaultKey, dict[str, str]]:
    key = decryptor.create_vault_key(vault_id, authorizer=authorizer_digest(API.public_key))
    return key, {name: key.seal_field(name, value) for name, value in PERSON.items()}


def _request(
    key: VaultKey,
    fields: dict[str, str],
    *,
    signer: LocalSigner = API,
    vault_id: str | None = None,
    authorized_fields: list[str] | None = None,
    expressions: dict[str, str] | None = None,
    authorized_expressions: dict[str, str] | None = None,
    request_id: str = "req-1",
    issued_at: float = NOW,
    signed: bool = True,
) -> EnclaveRequest:
    authorization = None
    if signed:
        authorization = authorize(
            signer,
            vault_id=vault_id or key.vault_id,
            fields=authorized_fields if authorized_fields is not None else list(fields),
            expressions=authorized_expressions if authorized_expressions is not None else expressions,
            request_id=request_id,
            issued_at=int(issued_at),
        ).to_wire()
    return key.request(fields, expressions=expressions, authorization=authorization)


def _send(handler: RequestHandler, request: EnclaveRequest) -> EnclaveReply:
    # Through the byte path the server uses, so the wire form is what is tested.
    return handler.handle(json.dumps(request.to_wire()).encode("utf-8"))


def _assert_refused(reply: EnclaveReply, code: EnclaveErrorCode, detail: str) -> None:
    assert reply.fields is None, "nothing is revealed"
    assert reply.code is code
    assert detail in reply.errors[0]
    for value in PERSON.values():
        assert value not in str(reply.to_wire())


def test_an_authorized_request_is_answered(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields))
    assert reply.fields == PERSON
    assert reply.errors == []


def test_no_authorization_no_key_call(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields, signed=False))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMissing")
    assert decryptor.calls == 0


def test_a_forged_authorization_does_not_release_the_key(
    handler: RequestHandler, decryptor: AdvancingDecryptor
) -> None:
    """Signed well, by a key the vault is not bound to: the key context differs, the key stays shut."""
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields, signer=LocalSigner()))
    _assert_refused(reply, EnclaveErrorCode.KEY_DECRYPT_FAILED, "InvalidCiphertextException")


def test_a_tampered_authorization_is_refused(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    wire = _request(key, fields).to_wire()
    other = authorize(API, vault_id=VAULT, fields=["first_name"], issued_at=int(NOW)).to_wire()
    # The API's signature over one request, pasted onto the claims of another.
    wire["request"]["authorization"]["signature"] = other.signature
    reply = handler.handle(json.dumps(wire).encode("utf-8"))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationSignatureInvalid")
    assert decryptor.calls == 0


def test_another_vaults_authorization_is_refused(
    handler: RequestHandler, decryptor: AdvancingDecryptor
) -> None:
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields, vault_id=OTHER_VAULT))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    assert decryptor.calls == 0


def test_other_fields_authorization_is_refused(
    handler: RequestHandler, decryptor: AdvancingDecryptor
) -> None:
    key, fields = _vault(decryptor)
    reply = _send(handler, _request(key, fields, authorized_fields=["first_name"]))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    assert decryptor.calls == 0


def test_null_fields_count_as_asked_for(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    wire = _request(key, fields).to_wire()
    wire["request"]["fields"]["email"] = None
    reply = handler.handle(json.dumps(wire).encode("utf-8"))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")


def test_other_expressions_are_refused(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    request = _request(
        key,
        fields,
        expressions={"last4": "ssn9.substring(5)"},
        authorized_expressions={"last4": "first_name"},
    )
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "AuthorizationMismatch")
    assert decryptor.calls == 0


def test_an_expired_authorization_is_refused(
    handler: RequestHandler, decryptor: AdvancingDecryptor, clock: Clock
) -> None:
    key, fields = _vault(decryptor)
    request = _request(key, fields)
    clock.now = NOW + 31
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "AuthorizationExpired")
    assert decryptor.calls == 0


def test_a_replayed_request_is_refused(handler: RequestHandler, decryptor: AdvancingDecryptor) -> None:
    key, fields = _vault(decryptor)
    request = _request(key, fields)
    assert _send(handler, request).fields == PERSON
    _assert_refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED, "AuthorizationReplayed")
    assert decryptor.calls == 1


def test_nothing_is_revealed_after_the_expiry_however_slow_kms_was(
    handler: RequestHandler, decryptor: AdvancingDecryptor
) -> None:
    key, fields = _vault(decryptor)
    decryptor.delay = 45.0
    reply = _send(handler, _request(key, fields))
    _assert_refused(reply, EnclaveErrorCode.UNAUTHORIZED, "expired during the request")


def test_the_key_is_asked_for_under_the_authorizers_digest(decryptor: AdvancingDecryptor) -> None:
    seen: list[dict[str, Any]] = []

    class Recording(LocalKeyDecryptor):
        def decrypt_private_key(self, **kwargs: Any) -> bytes:
            seen.append(kwargs)
            return decryptor.decrypt_private_key(**kwargs)

    handler = RequestHandler(Recording(), authorizer=AuthorizationVerifier(clock=lambda: NOW))
    key, fields = _vault(decryptor)
    assert _send(handler, _request(key, fields)).fields == PERSON
    assert seen[0]["authorizer"] == authorizer_digest(API.public_key)
    assert seen[0]["vault_id"] == VAULT


def test_without_a_verifier_the_key_call_is_unchanged() -> None:
    """A handler built without a verifier (the unit tests of other steps) passes no authorizer."""
    plain = LocalKeyDecryptor()
    key = plain.create_vault_key(VAULT)
    fields = {name: key.seal_field(name, value) for name, value in PERSON.items()}
    assert _send(RequestHandler(plain), key.request(fields)).fields == PERSON
