"""Operation ``index``: keyed tokens of values sealed to the index key, never the values.

The attacks are those of someone who reaches the enclave directly (from the parent or
the VPC): without the API's signature of exactly this index request, the enclave must
not compute a single token, or it would be an HMAC oracle and 10^9 SSN guesses would
undo the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.support.authorization import LocalSigner
from tests.support.enclave_keys import TEST_CREDENTIAL, LocalKeyDecryptor, VaultKey
from vault.common.authorization import (
    AuthorizationVerifier,
    Grant,
    authorizer_digest,
    sign,
)
from vault.common.blind_index import (
    INDEX_KEY_ID,
    INDEX_OPERATION,
    PARAM_DEPLOYMENT,
    PARAM_SEALED,
    PARAM_TARGET,
    sealed_digest,
)
from vault.common.messages import EnclaveErrorCode, EnclaveReply, EnclaveRequest
from vault.enclave.handler import RequestHandler

NOW = 1_800_000_000
DEPLOYMENT = "AAAAAAAAAAAAAAAAAAAAAA"
VAULT = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
SSN = "123456789"
API = LocalSigner()


@pytest.fixture
def decryptor() -> LocalKeyDecryptor:
    return LocalKeyDecryptor()


@pytest.fixture
def handler(decryptor: LocalKeyDecryptor) -> RequestHandler:
    return RequestHandler(decryptor, authorizer=AuthorizationVerifier(clock=lambda: float(NOW)))


@pytest.fixture
def index_key(decryptor: LocalKeyDecryptor) -> VaultKey:
    return decryptor.create_vault_key(INDEX_KEY_ID, authorizer=authorizer_digest(API.public_key))


def _private_key(decryptor: LocalKeyDecryptor, key: VaultKey) -> bytes:
    return decryptor.decrypt_private_key(
        ciphertext=key.encrypted_private_key,
        vault_id=INDEX_KEY_ID,
        region="us-east-1",
        credential=TEST_CREDENTIAL,
        authorizer=authorizer_digest(API.public_key),
    )


def expected_token(private_key: bytes, deployment: str, field: str, value: str) -> str:
    """The token as the design states it, computed without the project's code."""
    info = b"nitro-vault blind-index v1\x00" + deployment.encode() + b"\x00" + field.encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(private_key)
    mac = hmac.new(key, value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _parameters(fields: dict[str, str], target: str = VAULT) -> dict[str, str]:
    return {PARAM_DEPLOYMENT: DEPLOYMENT, PARAM_TARGET: target, PARAM_SEALED: sealed_digest(fields)}


def _request(
    key: VaultKey,
    fields: dict[str, str],
    *,
    parameters: dict[str, str] | None = None,
    signer: LocalSigner | None = API,
    operation: str | None = INDEX_OPERATION,
    signed_operation: str = INDEX_OPERATION,
    signed_parameters: dict[str, str] | None = None,
    request_id: str = "req-index-1",
) -> EnclaveRequest:
    parameters = _parameters(fields) if parameters is None else parameters
    authorization = None
    if signer is not None:
        grant = Grant.for_request(
            vault_id=key.vault_id,
            fields=list(fields),
            expressions={},
            request_id=request_id,
            issued_at=NOW,
            operation=signed_operation,
            parameters=parameters if signed_parameters is None else signed_parameters,
        )
        authorization = sign(grant, signer).to_wire()
    request = key.request(fields, authorization=authorization)
    update: dict[str, object] = {"operation": operation, "parameters": parameters}
    return request.model_copy(update={"request": request.request.model_copy(update=update)})


def _send(handler: RequestHandler, request: EnclaveRequest) -> EnclaveReply:
    return handler.handle(json.dumps(request.to_wire()).encode("utf-8"))


def _sealed(key: VaultKey, values: dict[str, str]) -> dict[str, str]:
    return {name: key.seal_field(name, value) for name, value in values.items()}


def _refused(reply: EnclaveReply, code: EnclaveErrorCode) -> None:
    assert reply.fields is None
    assert reply.code is code, reply.errors
    assert SSN not in json.dumps(reply.to_wire())


def test_tokens_are_the_keyed_digests_of_the_values(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey
) -> None:
    fields = _sealed(index_key, {"ssn9": SSN, "email": " Ann@Example.COM "})
    reply = _send(handler, _request(index_key, fields))
    assert reply.code is None, reply.errors
    assert reply.errors == []
    private_key = _private_key(decryptor, index_key)
    assert reply.fields == {
        "ssn9": expected_token(private_key, DEPLOYMENT, "ssn9", SSN),
        # E-mail addresses are indexed stripped and lower-cased.
        "email": expected_token(private_key, DEPLOYMENT, "email", "ann@example.com"),
    }
    assert SSN not in json.dumps(reply.to_wire())
    assert reply.fields["ssn9"] != hashlib.sha256(SSN.encode()).hexdigest()


def test_the_same_value_gives_the_same_token_under_fresh_sealing(
    handler: RequestHandler, index_key: VaultKey
) -> None:
    first = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": SSN}), request_id="r-1"))
    second = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": SSN}), request_id="r-2"))
    other = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": "123456780"}), request_id="r-3"))
    assert first.fields == second.fields
    assert first.fields != other.fields


def test_an_unsigned_index_request_is_refused_before_the_key_call(
    decryptor: LocalKeyDecryptor, index_key: VaultKey
) -> None:
    """Even a handler that checks no authorizations refuses to index unsigned: no oracle."""
    for handler in (RequestHandler(decryptor), RequestHandler(decryptor, authorizer=AuthorizationVerifier())):
        reply = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": SSN}), signer=None))
        _refused(reply, EnclaveErrorCode.INVALID_REQUEST)
    assert decryptor.calls == 0


def test_a_forged_authorization_does_not_release_the_index_key(
    handler: RequestHandler, index_key: VaultKey
) -> None:
    """Signed well by an attacker's own key: the key's encryption context names the API's key."""
    reply = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": SSN}), signer=LocalSigner()))
    _refused(reply, EnclaveErrorCode.KEY_DECRYPT_FAILED)


def test_a_decrypt_authorization_does_not_allow_indexing(
    handler: RequestHandler, index_key: VaultKey
) -> None:
    fields = _sealed(index_key, {"ssn9": SSN})
    reply = _send(handler, _request(index_key, fields, signed_operation="decrypt", signed_parameters={}))
    _refused(reply, EnclaveErrorCode.UNAUTHORIZED)
    assert "another operation" in reply.errors[0]


def test_a_decrypt_of_the_index_key_is_refused(handler: RequestHandler, index_key: VaultKey) -> None:
    """The reserved id cannot be decrypted: a decrypt grant for it would need the API to sign one."""
    fields = _sealed(index_key, {"ssn9": SSN})
    reply = _send(handler, _request(index_key, fields, operation=None, parameters={}))
    _refused(reply, EnclaveErrorCode.UNAUTHORIZED)


def test_values_swapped_under_a_genuine_authorization_are_refused(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey
) -> None:
    """A parent holding a real grant puts its own guess in: the signed digest of the inputs differs."""
    genuine = _sealed(index_key, {"ssn9": SSN})
    guess = _sealed(index_key, {"ssn9": "000000001"})
    request = _request(index_key, genuine)
    swapped = request.model_copy(update={"request": request.request.model_copy(update={"fields": guess})})
    _refused(_send(handler, swapped), EnclaveErrorCode.INVALID_REQUEST)
    # And with the digest parameter rewritten to match, the signature no longer covers it.
    forged = _request(index_key, guess, signed_parameters=_parameters(genuine))
    _refused(_send(handler, forged), EnclaveErrorCode.UNAUTHORIZED)
    assert decryptor.calls == 0


def test_a_replayed_index_request_is_refused(handler: RequestHandler, index_key: VaultKey) -> None:
    request = _request(index_key, _sealed(index_key, {"ssn9": SSN}))
    assert _send(handler, request).fields is not None
    _refused(_send(handler, request), EnclaveErrorCode.UNAUTHORIZED)


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {PARAM_DEPLOYMENT: DEPLOYMENT, PARAM_TARGET: VAULT},
        {PARAM_DEPLOYMENT: "short", PARAM_TARGET: VAULT, PARAM_SEALED: "x"},
        {PARAM_DEPLOYMENT: DEPLOYMENT, PARAM_TARGET: "../etc", PARAM_SEALED: "x"},
        {PARAM_DEPLOYMENT: DEPLOYMENT, PARAM_TARGET: VAULT, PARAM_SEALED: "x", "extra": "1"},
    ],
)
def test_malformed_parameters_are_refused_before_the_key_call(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey, parameters: dict[str, str]
) -> None:
    fields = _sealed(index_key, {"ssn9": SSN})
    reply = _send(handler, _request(index_key, fields, parameters=parameters))
    _refused(reply, EnclaveErrorCode.INVALID_REQUEST)
    assert decryptor.calls == 0


def test_only_searchable_fields_of_the_index_key_are_indexed(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey
) -> None:
    not_searchable = _sealed(index_key, {"first_name": "Ann"})
    _refused(_send(handler, _request(index_key, not_searchable)), EnclaveErrorCode.INVALID_REQUEST)
    vault_key = decryptor.create_vault_key(VAULT, authorizer=authorizer_digest(API.public_key))
    vault_fields = _sealed(vault_key, {"ssn9": SSN})
    _refused(_send(handler, _request(vault_key, vault_fields)), EnclaveErrorCode.INVALID_REQUEST)
    assert decryptor.calls == 0


def test_an_input_that_does_not_open_fails_the_whole_request(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey
) -> None:
    """Sealed to another key: no partial answer, so no write stores a vault without its token."""
    other = decryptor.create_vault_key(INDEX_KEY_ID, authorizer=authorizer_digest(API.public_key))
    fields = {**_sealed(index_key, {"ssn9": SSN}), **_sealed(other, {"email": "a@b.c"})}
    reply = _send(handler, _request(index_key, fields))
    _refused(reply, EnclaveErrorCode.INVALID_CIPHERTEXT)


# -- a decrypt that carries the index key for CEL's hmac_sha256 -------------------------------

HMAC = {"t": 'hmac_sha256(ssn9, "ssn9")'}


def _decrypt_with_index_key(
    vault_key: VaultKey,
    index_key: VaultKey,
    *,
    parameters: dict[str, str] | None = None,
    expressions: dict[str, str] | None = None,
    signer: LocalSigner | None = API,
    signed_parameters: dict[str, str] | None = None,
    request_id: str = "req-hmac-1",
) -> EnclaveRequest:
    fields = {"ssn9": vault_key.seal_field("ssn9", SSN)}
    if parameters is None:
        parameters = {
            "index_key": base64.b64encode(index_key.encrypted_private_key).decode(),
            "index_deployment": DEPLOYMENT,
        }
    expressions = HMAC if expressions is None else expressions
    authorization = None
    if signer is not None:
        grant = Grant.for_request(
            vault_id=vault_key.vault_id,
            fields=list(fields),
            expressions=expressions,
            request_id=request_id,
            issued_at=NOW,
            parameters=parameters if signed_parameters is None else signed_parameters,
        )
        authorization = sign(grant, signer).to_wire()
    request = vault_key.request(fields, expressions=expressions or None, authorization=authorization)
    return request.model_copy(
        update={"request": request.request.model_copy(update={"parameters": parameters})}
    )


@pytest.fixture
def vault_key(decryptor: LocalKeyDecryptor) -> VaultKey:
    return decryptor.create_vault_key(VAULT, authorizer=authorizer_digest(API.public_key))


def test_hmac_sha256_answers_the_index_token(
    handler: RequestHandler, decryptor: LocalKeyDecryptor, index_key: VaultKey, vault_key: VaultKey
) -> None:
    reply = _send(handler, _decrypt_with_index_key(vault_key, index_key))
    assert reply.errors == []
    assert reply.fields is not None
    expected = expected_token(_private_key(decryptor, index_key), DEPLOYMENT, "ssn9", SSN)
    assert reply.fields["t"] == expected
    # The same as the index operation answers for that value.
    indexed = _send(handler, _request(index_key, _sealed(index_key, {"ssn9": SSN})))
    assert indexed.fields == {"ssn9": expected}


def test_hmac_sha256_without_an_index_key_is_an_expression_error(
    handler: RequestHandler, index_key: VaultKey, vault_key: VaultKey
) -> None:
    reply = _send(handler, _decrypt_with_index_key(vault_key, index_key, parameters={}))
    assert reply.fields is not None and reply.fields["t"] is None
    assert "no index key" in reply.errors[0]


@pytest.mark.parametrize(
    "parameters",
    [
        {"other": "x"},
        {"index_key": "AAAA", "index_deployment": DEPLOYMENT, "other": "x"},
        {"index_key": "AAAA", "index_deployment": "short"},
        {"index_key": "not base64!", "index_deployment": DEPLOYMENT},
    ],
)
def test_a_decrypt_takes_no_other_parameters(
    handler: RequestHandler,
    decryptor: LocalKeyDecryptor,
    index_key: VaultKey,
    vault_key: VaultKey,
    parameters: dict[str, str],
) -> None:
    reply = _send(handler, _decrypt_with_index_key(vault_key, index_key, parameters=parameters))
    _refused(reply, EnclaveErrorCode.INVALID_REQUEST)
    assert decryptor.calls == 0


def test_the_index_key_is_refused_unsigned_or_without_expressions(
    decryptor: LocalKeyDecryptor, index_key: VaultKey, vault_key: VaultKey
) -> None:
    """Unsigned (even by a handler that checks nothing) it would make CEL an HMAC oracle."""
    unchecked = RequestHandler(decryptor)
    _refused(
        _send(unchecked, _decrypt_with_index_key(vault_key, index_key, signer=None)),
        EnclaveErrorCode.INVALID_REQUEST,
    )
    _refused(
        _send(unchecked, _decrypt_with_index_key(vault_key, index_key, expressions={})),
        EnclaveErrorCode.INVALID_REQUEST,
    )
    assert decryptor.calls == 0


def test_an_index_key_the_api_did_not_sign_is_refused(
    handler: RequestHandler, index_key: VaultKey, vault_key: VaultKey
) -> None:
    reply = _send(handler, _decrypt_with_index_key(vault_key, index_key, signed_parameters={}))
    _refused(reply, EnclaveErrorCode.UNAUTHORIZED)
