"""The API's signed authorization of a decrypt (decision D16): format, verification, replay."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from tests.support.authorization import LocalSigner, authorize
from vault.common.authorization import (
    AUTHORIZER_CONTEXT_KEY,
    DOMAIN,
    MAX_LIFETIME_SECONDS,
    AuthorizationError,
    AuthorizationErrorCode,
    AuthorizationVerifier,
    AuthorizationWire,
    Grant,
    ReplayCache,
    RequestScope,
    SignedAuthorization,
    authorizer_context,
    authorizer_digest,
    expression_digest,
    sign,
    signing_input,
)

NOW = 1_800_000_000
VAULT = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
FIELDS = ("ssn4", "first_name")
EXPRESSIONS = {"age": "date(dob).age()", "initial": "first_name[0]"}
SIGNER = LocalSigner()


def _scope(**changes: Any) -> RequestScope:
    values: dict[str, Any] = {"vault_id": VAULT, "fields": frozenset(FIELDS), "expressions": EXPRESSIONS}
    values.update(changes)
    return RequestScope(**values)


def _signed(**changes: Any) -> SignedAuthorization:
    values: dict[str, Any] = {
        "vault_id": VAULT,
        "fields": FIELDS,
        "expressions": EXPRESSIONS,
        "request_id": "req-1",
        "issued_at": NOW,
    }
    values.update(changes)
    signer = values.pop("signer", SIGNER)
    return authorize(signer, **values)


def _verifier(now: float = NOW, cache: ReplayCache | None = None) -> AuthorizationVerifier:
    return AuthorizationVerifier(clock=lambda: now, replay_cache=cache)


def _refusal(signed: SignedAuthorization, scope: RequestScope | None = None, now: float = NOW) -> str:
    with pytest.raises(AuthorizationError) as refused:
        _verifier(now).verify(signed, scope or _scope())
    # Messages name the check; they never carry an expression's text or a field value.
    assert "dob" not in str(refused.value)
    return refused.value.code.value


def _claims(signed: SignedAuthorization) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(signed.claims[len(DOMAIN) :])
    return document


def _with_claims(signed: SignedAuthorization, document: dict[str, Any]) -> SignedAuthorization:
    claims = DOMAIN + json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return SignedAuthorization(claims=claims, signature=signed.signature, public_key=signed.public_key)


def test_a_valid_authorization_gives_its_grant() -> None:
    grant = _verifier().verify(_signed(), _scope())
    assert grant.vault_id == VAULT
    assert grant.fields == ("first_name", "ssn4")
    assert grant.expressions == tuple((name, expression_digest(text)) for name, text in EXPRESSIONS.items())
    assert (grant.request_id, grant.issued_at, grant.expires_at) == ("req-1", NOW, NOW + 30)


def test_claim_bytes_round_trip_and_are_canonical() -> None:
    grant = Grant.for_request(
        vault_id=VAULT, fields=["b", "a", "a"], expressions={"x": "1"}, request_id="r", issued_at=NOW
    )
    data = grant.to_bytes()
    assert data.startswith(DOMAIN)
    assert Grant.from_bytes(data) == grant
    assert data == Grant.from_bytes(data).to_bytes()
    assert b" " not in data[len(DOMAIN) :]


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("vault_id", "v_other"),
        ("fields", ["first_name", "ssn4", "ssn9"]),
        ("fields", ["first_name"]),
        ("expressions", [["age", expression_digest("1")], ["initial", expression_digest("first_name[0]")]]),
        ("expressions", []),
        ("request_id", "req-2"),
        ("issued_at", NOW + 1),
        ("expires_at", NOW + 31),
        ("format", "nitro-vault-authorization/2"),
    ],
)
def test_tampering_with_any_signed_claim_is_refused(claim: str, value: Any) -> None:
    signed = _signed()
    document = _claims(signed)
    document[claim] = value
    assert _refusal(_with_claims(signed, document)) == "AuthorizationSignatureInvalid"


@pytest.mark.parametrize(
    "scope",
    [
        pytest.param(_scope(vault_id="v_another"), id="another-vault"),
        pytest.param(_scope(fields=frozenset({"first_name", "ssn4", "ssn9"})), id="more-fields"),
        pytest.param(_scope(fields=frozenset({"first_name"})), id="fewer-fields"),
        pytest.param(_scope(fields=frozenset({"first_name", "ssn9"})), id="other-fields"),
        pytest.param(_scope(expressions={**EXPRESSIONS, "ssn": "ssn9"}), id="more-expressions"),
        pytest.param(_scope(expressions={"age": "date(dob).age()"}), id="fewer-expressions"),
        pytest.param(_scope(expressions={**EXPRESSIONS, "age": "dob"}), id="other-expression-text"),
        pytest.param(
            _scope(expressions={"initial": "first_name[0]", "age": "date(dob).age()"}), id="other-order"
        ),
    ],
)
def test_a_request_other_than_the_authorized_one_is_refused(scope: RequestScope) -> None:
    assert _refusal(_signed(), scope) == "AuthorizationMismatch"


def test_a_signature_by_another_key_than_the_one_shown_is_refused() -> None:
    signed = _signed()
    other = LocalSigner()
    assert (
        _refusal(SignedAuthorization(signed.claims, signed.signature, other.public_key))
        == "AuthorizationSignatureInvalid"
    )
    flipped = bytearray(signed.signature)
    flipped[-1] ^= 1
    assert _refusal(SignedAuthorization(signed.claims, bytes(flipped), signed.public_key)) in {
        "AuthorizationSignatureInvalid",
        "AuthorizationMalformed",
    }


def test_another_authorizer_verifies_but_derives_another_key_context() -> None:
    """A forger's own key signs well; it is the encryption context that refuses it, in KMS."""
    forger = LocalSigner()
    signed = _signed(signer=forger)
    _verifier().verify(signed, _scope())
    assert authorizer_digest(signed.public_key) != authorizer_digest(SIGNER.public_key)
    assert authorizer_context(VAULT, signed.public_key, "vault_id") != authorizer_context(
        VAULT, SIGNER.public_key, "vault_id"
    )
    assert authorizer_context(VAULT, SIGNER.public_key, "vault_id") == {
        "vault_id": VAULT,
        AUTHORIZER_CONTEXT_KEY: authorizer_digest(SIGNER.public_key),
    }


def test_expiry_and_lifetime() -> None:
    signed = _signed()
    _verifier(NOW + 29.9).verify(signed, _scope())
    assert _refusal(signed, now=NOW + 30) == "AuthorizationExpired"
    assert _refusal(signed, now=NOW + 3600) == "AuthorizationExpired"
    assert _refusal(signed, now=NOW - 6) == "AuthorizationNotYetValid"
    _verifier(NOW - 5).verify(signed, _scope())
    too_long = _signed(lifetime_seconds=MAX_LIFETIME_SECONDS + 1)
    assert _refusal(too_long) == "AuthorizationLifetimeTooLong"
    assert _refusal(_signed(lifetime_seconds=-1)) == "AuthorizationLifetimeTooLong"


def test_a_grant_that_expires_during_the_request_is_refused_before_the_reveal() -> None:
    now = [float(NOW)]
    verifier = AuthorizationVerifier(clock=lambda: now[0])
    grant = verifier.verify(_signed(), _scope())
    verifier.still_valid(grant)
    now[0] = NOW + 30
    with pytest.raises(AuthorizationError) as refused:
        verifier.still_valid(grant)
    assert refused.value.code is AuthorizationErrorCode.EXPIRED


def test_a_request_id_is_used_once() -> None:
    verifier = _verifier()
    verifier.verify(_signed(), _scope())
    with pytest.raises(AuthorizationError) as refused:
        verifier.verify(_signed(), _scope())
    assert refused.value.code is AuthorizationErrorCode.REPLAYED
    # Another id under the same verifier is fine.
    verifier.verify(_signed(request_id="req-2"), _scope())


def test_only_a_valid_authorization_uses_up_its_request_id() -> None:
    verifier = _verifier()
    with pytest.raises(AuthorizationError):
        verifier.verify(_signed(), _scope(vault_id="v_another"))
    verifier.verify(_signed(), _scope())


def test_the_replay_cache_is_bounded_and_fails_closed() -> None:
    cache = ReplayCache(capacity=2)
    cache.admit("a", NOW + 10, NOW)
    cache.admit("b", NOW + 20, NOW)
    with pytest.raises(AuthorizationError) as refused:
        cache.admit("c", NOW + 10, NOW)
    assert refused.value.code is AuthorizationErrorCode.REPLAY_CACHE_FULL
    # Once "a" has expired it is forgotten, making room; "b" is still remembered.
    cache.admit("c", NOW + 30, NOW + 11)
    assert len(cache) == 2
    with pytest.raises(AuthorizationError) as replayed:
        cache.admit("b", NOW + 20, NOW + 11)
    assert replayed.value.code is AuthorizationErrorCode.REPLAYED


def test_missing_and_malformed_wire_forms() -> None:
    with pytest.raises(AuthorizationError) as missing:
        SignedAuthorization.from_wire(None)
    assert missing.value.code is AuthorizationErrorCode.MISSING
    good = _signed().to_wire()
    for name in ("claims", "signature", "public_key"):
        bad = AuthorizationWire(**{**good.model_dump(), name: "not base64!"})
        with pytest.raises(AuthorizationError) as malformed:
            SignedAuthorization.from_wire(bad)
        assert malformed.value.code is AuthorizationErrorCode.MALFORMED


def test_wire_form_round_trips() -> None:
    signed = _signed()
    assert (
        SignedAuthorization.from_wire(AuthorizationWire.model_validate(signed.to_wire().model_dump()))
        == signed
    )
    assert "claims" not in repr(signed.to_wire())


@pytest.mark.parametrize(
    "document",
    [
        {"vault_id": VAULT},
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": "",
            "fields": [],
            "expressions": [],
            "request_id": "r",
            "issued_at": NOW,
            "expires_at": NOW + 1,
        },
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": VAULT,
            "fields": ["b", "a"],
            "expressions": [],
            "request_id": "r",
            "issued_at": NOW,
            "expires_at": NOW + 1,
        },
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": VAULT,
            "fields": [],
            "expressions": [["x", "y"]],
            "request_id": "r",
            "issued_at": NOW,
            "expires_at": NOW + 1,
        },
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": VAULT,
            "fields": [],
            "expressions": [],
            "request_id": "has space",
            "issued_at": NOW,
            "expires_at": NOW + 1,
        },
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": VAULT,
            "fields": [],
            "expressions": [],
            "request_id": "r",
            "issued_at": True,
            "expires_at": NOW + 1,
        },
        {
            "format": "nitro-vault-authorization/1",
            "vault_id": VAULT,
            "fields": [],
            "expressions": [],
            "request_id": "r",
            "issued_at": NOW,
            "expires_at": NOW + 1,
            "extra": 1,
        },
    ],
)
def test_signed_but_malformed_claims_are_refused(document: dict[str, Any]) -> None:
    claims = DOMAIN + json.dumps(document).encode()
    signed = SignedAuthorization(
        claims=claims, signature=SIGNER.sign(signing_input(claims)), public_key=SIGNER.public_key
    )
    assert _refusal(signed) == "AuthorizationMalformed"


def test_signed_bytes_without_the_domain_are_refused() -> None:
    claims = _signed().claims[len(DOMAIN) :]
    signed = SignedAuthorization(
        claims=claims, signature=SIGNER.sign(signing_input(claims)), public_key=SIGNER.public_key
    )
    assert _refusal(signed) == "AuthorizationMalformed"


def test_p384_keys_verify_and_other_keys_are_unsupported() -> None:
    p384 = LocalSigner(curve=ec.SECP384R1())
    _verifier().verify(_signed(signer=p384), _scope())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_der = rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    signed = _signed()
    assert (
        _refusal(SignedAuthorization(signed.claims, signed.signature, rsa_der))
        == "AuthorizationKeyUnsupported"
    )
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    p521_der = p521.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert (
        _refusal(SignedAuthorization(signed.claims, signed.signature, p521_der))
        == "AuthorizationKeyUnsupported"
    )
    assert (
        _refusal(SignedAuthorization(signed.claims, signed.signature, b"junk"))
        == "AuthorizationKeyUnsupported"
    )


def test_sign_uses_the_signers_key() -> None:
    grant = Grant.for_request(vault_id=VAULT, fields=FIELDS, expressions={}, request_id="r", issued_at=NOW)
    signed = sign(grant, SIGNER)
    assert signed.public_key == SIGNER.public_key
    assert signed.claims == grant.to_bytes()


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_claims_is_refused(position: int, bit: int) -> None:
    signed = _signed()
    claims = bytearray(signed.claims)
    claims[position % len(claims)] ^= 1 << bit
    tampered = SignedAuthorization(bytes(claims), signed.signature, signed.public_key)
    with pytest.raises(AuthorizationError) as refused:
        _verifier().verify(tampered, _scope())
    assert refused.value.code is AuthorizationErrorCode.SIGNATURE_INVALID


def test_signature_is_base64_of_der() -> None:
    wire = _signed().to_wire()
    assert base64.b64decode(wire.signature)[0] == 0x30


def test_an_operation_and_its_parameters_are_signed_and_checked() -> None:
    grant = Grant.for_request(
        vault_id=VAULT,
        fields=FIELDS,
        expressions={},
        request_id="op-1",
        issued_at=NOW,
        operation="rotate",
        parameters={"new_public_key": "AAAA", "new_suite_id": "BBBB"},
    )
    assert Grant.from_bytes(grant.to_bytes()) == grant
    signed = sign(grant, SIGNER)
    verifier = AuthorizationVerifier(clock=lambda: NOW)
    base = {"vault_id": VAULT, "fields": frozenset(FIELDS), "expressions": {}}
    parameters = {"new_public_key": "AAAA", "new_suite_id": "BBBB"}
    for scope, message in (
        (RequestScope(**base), "another operation"),
        (
            RequestScope(**base, operation="rotate", parameters={**parameters, "new_public_key": "CCCC"}),
            "other parameters",
        ),
        (RequestScope(**base, operation="rotate", parameters={"new_suite_id": "BBBB"}), "other parameters"),
        (RequestScope(**base, operation="index", parameters=parameters), "another operation"),
    ):
        with pytest.raises(AuthorizationError, match=message) as caught:
            verifier.verify(signed, scope)
        assert caught.value.code is AuthorizationErrorCode.MISMATCH
    assert verifier.verify(signed, RequestScope(**base, operation="rotate", parameters=parameters)) == grant


def test_a_decrypt_grant_keeps_its_claims_and_refuses_a_decrypt_operation_claim() -> None:
    grant = Grant.for_request(vault_id=VAULT, fields=FIELDS, expressions={}, request_id="d", issued_at=NOW)
    assert b'"operation"' not in grant.to_bytes()
    forged = grant.to_bytes()[:-1] + b',"operation":"decrypt","parameters":[]}'
    with pytest.raises(AuthorizationError) as caught:
        Grant.from_bytes(forged)
    assert caught.value.code is AuthorizationErrorCode.MALFORMED
    only_one = grant.to_bytes()[:-1] + b',"operation":"rotate"}'
    with pytest.raises(AuthorizationError):
        Grant.from_bytes(only_one)


@pytest.mark.parametrize(
    "parameters",
    ['{"a":"b"}', '[["a"]]', '[["B","x"]]', '[["b","x"],["a","y"]]', '[["a","x"],["a","y"]]', '[["a",1]]'],
)
def test_malformed_parameters_are_refused(parameters: str) -> None:
    grant = Grant.for_request(vault_id=VAULT, fields=FIELDS, expressions={}, request_id="p", issued_at=NOW)
    claims = grant.to_bytes()[:-1] + b',"operation":"rotate","parameters":' + parameters.encode() + b"}"
    with pytest.raises(AuthorizationError) as caught:
        Grant.from_bytes(claims)
    assert caught.value.code is AuthorizationErrorCode.MALFORMED
