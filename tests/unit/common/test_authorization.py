"""The API's signed authorization of a decrypt (decision D16): format, verification, replay."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.support.authorization import LocalSigner, authorize
from vault.common.authorization import (
    AUTHORIZER_CONTEXT_KEY,
    CLOCK_SKEW_SECONDS,
    DOMAIN,
    MAX_CLAIMS_BYTES,
    MAX_LIFETIME_SECONDS,
    MAX_PUBLIC_KEY_BYTES,
    MAX_SIGNATURE_BYTES,
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
    load_authorizer_key,
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


# -- every refusal's code and message, and every bound at and one past its limit -----------------
#
# The codes are the wire contract; the messages are what operators read in the enclave's log, so
# they are pinned exactly (and they never carry a claim's value).

DIGEST = expression_digest("1")


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": "nitro-vault-authorization/1",
        "vault_id": VAULT,
        "fields": ["a"],
        "expressions": [["x", DIGEST]],
        "request_id": "r",
        "issued_at": NOW,
        "expires_at": NOW + 30,
    }
    document.update(changes)
    return {name: value for name, value in document.items() if value is not _DROP}


_DROP = object()


def _encoded(document: dict[str, Any]) -> bytes:
    return DOMAIN + json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _signed_bytes(claims: bytes, signer: LocalSigner = SIGNER) -> SignedAuthorization:
    return SignedAuthorization(
        claims=claims, signature=signer.sign(signing_input(claims)), public_key=signer.public_key
    )


def _refused(call: Any, *args: Any) -> tuple[AuthorizationErrorCode, str]:
    with pytest.raises(AuthorizationError) as refused:
        call(*args)
    return refused.value.code, str(refused.value)


MALFORMED = AuthorizationErrorCode.MALFORMED
UNKNOWN_FORMAT = (MALFORMED, "authorization claims have an unknown format")
NOT_JSON = (MALFORMED, "authorization claims are not JSON")


def _claim(name: str) -> tuple[AuthorizationErrorCode, str]:
    return MALFORMED, f"authorization claim {name} is malformed"


def test_signing_input_is_the_domain_a_label_and_the_claims_sha256() -> None:
    claims = b"any claim bytes"
    expected = b"nitro-vault-authorization/1\nsha256:" + hashlib.sha256(claims).digest()
    assert signing_input(claims) == expected
    assert len(signing_input(b"")) == 28 + 7 + 32


def test_an_expression_digest_is_the_sha256_of_its_utf8_and_takes_lone_surrogates() -> None:
    assert expression_digest("é") == hashlib.sha256("é".encode()).hexdigest()
    # JSON can carry a lone surrogate ("\ud800"); its digest must not fail, and is that of its
    # surrogatepass encoding, as the API computed it.
    assert expression_digest("a\ud800") == hashlib.sha256(b"a\xed\xa0\x80").hexdigest()


def test_claim_bytes_are_exactly_sorted_compact_ascii_json() -> None:
    grant = Grant(
        vault_id="v_é",
        fields=("a", "b"),
        expressions=(("x", DIGEST),),
        request_id="r",
        issued_at=10,
        expires_at=40,
    )
    assert grant.to_bytes() == DOMAIN + (
        '{"expires_at":40,"expressions":[["x","' + DIGEST + '"]],"fields":["a","b"],'
        '"format":"nitro-vault-authorization/1","issued_at":10,"request_id":"r","vault_id":"v_\\u00e9"}'
    ).encode("ascii")
    assert Grant.from_bytes(grant.to_bytes()) == grant
    operation = Grant(**{**grant.__dict__, "operation": "rotate", "parameters": (("k", "é"),)})
    assert operation.to_bytes() == DOMAIN + (
        '{"expires_at":40,"expressions":[["x","' + DIGEST + '"]],"fields":["a","b"],'
        '"format":"nitro-vault-authorization/1","issued_at":10,"operation":"rotate",'
        '"parameters":[["k","\\u00e9"]],"request_id":"r","vault_id":"v_\\u00e9"}'
    ).encode("ascii")
    assert Grant.from_bytes(operation.to_bytes()) == operation


def test_an_operation_without_parameters_and_a_decrypt_with_them_keep_their_claims() -> None:
    """Either part alone still carries both claims: dropping them would sign another grant."""
    base = Grant.for_request(vault_id=VAULT, fields=FIELDS, expressions={}, request_id="o", issued_at=NOW)
    no_parameters = Grant(**{**base.__dict__, "operation": "index"})
    assert b'"operation":"index","parameters":[]' in no_parameters.to_bytes()
    assert Grant.from_bytes(no_parameters.to_bytes()) == no_parameters
    decrypt_with = Grant(**{**base.__dict__, "parameters": (("p", "1"),)})
    assert b'"operation":"decrypt","parameters":[["p","1"]]' in decrypt_with.to_bytes()
    assert Grant.from_bytes(decrypt_with.to_bytes()) == decrypt_with


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param(_encoded(_document())[len(DOMAIN) :], UNKNOWN_FORMAT, id="no-domain"),
        pytest.param(b"nitro-vault-authorization/2\n{}", UNKNOWN_FORMAT, id="other-domain"),
        pytest.param(DOMAIN + b"\xff{}", NOT_JSON, id="not-ascii"),
        pytest.param(DOMAIN + b"{", NOT_JSON, id="truncated"),
        pytest.param(DOMAIN + b"[" * 100_000 + b"]" * 100_000, NOT_JSON, id="nested-too-deep"),
        pytest.param(DOMAIN + b"[]", UNKNOWN_FORMAT, id="not-an-object"),
        pytest.param(_encoded(_document(request_id=_DROP)), UNKNOWN_FORMAT, id="missing-claim"),
        pytest.param(_encoded(_document(extra=1)), UNKNOWN_FORMAT, id="extra-claim"),
        pytest.param(_encoded(_document(operation="rotate")), UNKNOWN_FORMAT, id="operation-alone"),
        pytest.param(_encoded(_document(parameters=[])), UNKNOWN_FORMAT, id="parameters-alone"),
        pytest.param(_encoded(_document(format="nitro-vault-authorization/2")), UNKNOWN_FORMAT, id="format"),
    ],
)
def test_claims_of_an_unknown_format_are_refused(
    claims: bytes, expected: tuple[AuthorizationErrorCode, str]
) -> None:
    assert _refused(Grant.from_bytes, claims) == expected
    assert _refused(_verifier().verify, _signed_bytes(claims), _scope()) == expected


@pytest.mark.parametrize(
    ("changes", "claim"),
    [
        ({"vault_id": ""}, "vault_id"),
        ({"vault_id": 1}, "vault_id"),
        ({"fields": "a"}, "fields"),
        ({"fields": [""]}, "fields"),
        ({"fields": [1]}, "fields"),
        ({"fields": ["b", "a"]}, "fields"),
        ({"fields": ["a", "a"]}, "fields"),
        ({"expressions": {"x": DIGEST}}, "expressions"),
        ({"expressions": ["x" + DIGEST]}, "expressions"),
        ({"expressions": [["x"]]}, "expressions"),
        ({"expressions": [["x", DIGEST, "y"]]}, "expressions"),
        ({"expressions": [["", DIGEST]]}, "expressions"),
        ({"expressions": [["x", ""]]}, "expressions"),
        ({"expressions": [["x", DIGEST.upper()]]}, "expressions"),
        ({"expressions": [["x", DIGEST[:-1]]]}, "expressions"),
        ({"expressions": [["x", DIGEST], ["x", DIGEST]]}, "expressions"),
        ({"request_id": ""}, "request_id"),
        ({"request_id": "r" * 65}, "request_id"),
        ({"request_id": "a/b"}, "request_id"),
        ({"request_id": 1}, "request_id"),
        ({"issued_at": True}, "issued_at"),
        ({"issued_at": -1}, "issued_at"),
        ({"issued_at": "1800000000"}, "issued_at"),
        ({"issued_at": 1.5}, "issued_at"),
        ({"expires_at": False}, "expires_at"),
        ({"expires_at": -1}, "expires_at"),
        ({"operation": "decrypt", "parameters": []}, "operation"),
        ({"operation": "Rotate", "parameters": []}, "operation"),
        ({"operation": "", "parameters": []}, "operation"),
        ({"operation": "r" * 33, "parameters": []}, "operation"),
        ({"operation": 1, "parameters": []}, "operation"),
        ({"operation": "rotate", "parameters": {}}, "parameters"),
        ({"operation": "rotate", "parameters": [["k"]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["k", "v", "w"]]}, "parameters"),
        ({"operation": "rotate", "parameters": ["kv"]}, "parameters"),
        ({"operation": "rotate", "parameters": [["K", "v"]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["k" * 65, "v"]]}, "parameters"),
        ({"operation": "rotate", "parameters": [[1, "v"]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["k", 1]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["k", "v" * 4097]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["b", "v"], ["a", "v"]]}, "parameters"),
        ({"operation": "rotate", "parameters": [["a", "v"], ["a", "w"]]}, "parameters"),
    ],
)
def test_each_malformed_claim_is_named(changes: dict[str, Any], claim: str) -> None:
    claims = _encoded(_document(**changes))
    assert _refused(Grant.from_bytes, claims) == _claim(claim)
    assert _refused(_verifier().verify, _signed_bytes(claims), _scope()) == _claim(claim)


def test_claims_at_their_limits_are_accepted() -> None:
    grant = Grant.from_bytes(
        _encoded(
            _document(
                request_id="r" * 64,
                issued_at=0,
                expires_at=0,
                operation="r" * 32,
                parameters=[["k" * 64, "v" * 4096]],
            )
        )
    )
    assert (grant.request_id, grant.issued_at, grant.expires_at) == ("r" * 64, 0, 0)
    assert (grant.operation, grant.parameters) == ("r" * 32, (("k" * 64, "v" * 4096),))


def _padded_to(size: int) -> SignedAuthorization:
    """A valid authorization whose claims are exactly ``size`` bytes (the vault id pads them)."""
    base = len(
        Grant.for_request(vault_id="", fields=[], expressions={}, request_id="big", issued_at=NOW).to_bytes()
    )
    grant = Grant.for_request(
        vault_id="v" * (size - base), fields=[], expressions={}, request_id="big", issued_at=NOW
    )
    signed = sign(grant, SIGNER)
    assert len(signed.claims) == size
    return signed


def test_claims_are_bounded_at_max_claims_bytes() -> None:
    at_limit = _padded_to(MAX_CLAIMS_BYTES)
    scope = RequestScope(
        vault_id=Grant.from_bytes(at_limit.claims).vault_id, fields=frozenset(), expressions={}
    )
    assert _verifier().verify(at_limit, scope).request_id == "big"
    over = _padded_to(MAX_CLAIMS_BYTES + 1)
    scope = RequestScope(vault_id=Grant.from_bytes(over.claims).vault_id, fields=frozenset(), expressions={})
    assert _refused(_verifier().verify, over, scope) == (MALFORMED, "authorization is too long")


def test_signatures_are_bounded_at_max_signature_bytes() -> None:
    signed = _signed()
    at_limit = SignedAuthorization(signed.claims, b"\x30" * MAX_SIGNATURE_BYTES, signed.public_key)
    assert _refused(_verifier().verify, at_limit, _scope()) == (
        AuthorizationErrorCode.SIGNATURE_INVALID,
        "the authorization's signature does not verify",
    )
    over = SignedAuthorization(signed.claims, b"\x30" * (MAX_SIGNATURE_BYTES + 1), signed.public_key)
    assert _refused(_verifier().verify, over, _scope()) == (MALFORMED, "authorization is too long")


def test_the_wire_form_bounds_each_base64_string() -> None:
    for name, limit in (
        ("claims", MAX_CLAIMS_BYTES),
        ("signature", MAX_SIGNATURE_BYTES),
        ("public_key", MAX_PUBLIC_KEY_BYTES),
    ):
        longest = limit * 4 // 3 + 4
        assert len(base64.b64encode(b"\x00" * limit)) <= longest
        values = {"claims": "", "signature": "", "public_key": "", name: "A" * longest}
        AuthorizationWire(**values)
        with pytest.raises(ValidationError):
            AuthorizationWire(**{**values, name: "A" * (longest + 1)})


def test_authorizer_keys_are_refused_by_name() -> None:
    unsupported = AuthorizationErrorCode.KEY_UNSUPPORTED
    signed = _signed()

    def refusal(public_key: bytes) -> tuple[AuthorizationErrorCode, str]:
        return _refused(
            _verifier().verify, SignedAuthorization(signed.claims, signed.signature, public_key), _scope()
        )

    assert refusal(b"\x00" * MAX_PUBLIC_KEY_BYTES) == (unsupported, "the authorizer key is not a public key")
    assert refusal(b"\x00" * (MAX_PUBLIC_KEY_BYTES + 1)) == (unsupported, "the authorizer key is too long")
    ed25519 = Ed25519PrivateKey.generate().public_key()
    ed_der = ed25519.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert refusal(ed_der) == (unsupported, "the authorizer key is not an EC key")
    small_rsa = rsa.RSAPublicNumbers(65537, (1 << 1023) | 1).public_key()
    rsa_der = small_rsa.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert len(rsa_der) <= MAX_PUBLIC_KEY_BYTES
    assert refusal(rsa_der) == (unsupported, "the authorizer key is not an EC key")
    p521 = ec.generate_private_key(ec.SECP521R1()).public_key()
    p521_der = p521.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert refusal(p521_der) == (unsupported, "the authorizer key is not P-256 or P-384")
    assert load_authorizer_key(SIGNER.public_key).curve.name == "secp256r1"


def test_lifetime_is_bounded_at_the_maximum() -> None:
    too_long = (AuthorizationErrorCode.LIFETIME_TOO_LONG, "the authorization's lifetime is too long")
    assert _verifier().verify(_signed(lifetime_seconds=MAX_LIFETIME_SECONDS), _scope()).expires_at == (
        NOW + MAX_LIFETIME_SECONDS
    )
    signed = _signed(lifetime_seconds=MAX_LIFETIME_SECONDS + 1)
    assert _refused(_verifier().verify, signed, _scope()) == too_long
    assert _refused(_verifier().verify, _signed(lifetime_seconds=-1), _scope()) == too_long
    # Zero is a valid lifetime that is over at once: expired, not too long.
    zero = _signed(lifetime_seconds=0)
    assert _refused(_verifier().verify, zero, _scope()) == (
        AuthorizationErrorCode.EXPIRED,
        "the authorization has expired",
    )
    strict = AuthorizationVerifier(clock=lambda: NOW, max_lifetime_seconds=10)
    strict.verify(_signed(lifetime_seconds=10), _scope())
    assert _refused(strict.verify, _signed(request_id="req-2", lifetime_seconds=11), _scope()) == too_long


def test_clock_skew_and_expiry_boundaries() -> None:
    signed = _signed()
    future = (AuthorizationErrorCode.NOT_YET_VALID, "the authorization is issued in the future")
    expired = (AuthorizationErrorCode.EXPIRED, "the authorization has expired")
    _verifier(NOW - CLOCK_SKEW_SECONDS).verify(signed, _scope())
    assert _refused(_verifier(NOW - CLOCK_SKEW_SECONDS - 0.001).verify, signed, _scope()) == future
    _verifier(NOW + 30 - 0.001).verify(signed, _scope())
    assert _refused(_verifier(NOW + 30).verify, signed, _scope()) == expired
    lenient = AuthorizationVerifier(clock=lambda: NOW - 20, clock_skew_seconds=20)
    lenient.verify(signed, _scope())
    strict = AuthorizationVerifier(clock=lambda: NOW - 1, clock_skew_seconds=0)
    assert _refused(strict.verify, signed, _scope()) == future


def test_still_valid_names_its_check() -> None:
    now = [float(NOW)]
    verifier = AuthorizationVerifier(clock=lambda: now[0])
    grant = verifier.verify(_signed(), _scope())
    now[0] = NOW + 30 - 0.001
    verifier.still_valid(grant)
    now[0] = NOW + 30
    assert _refused(verifier.still_valid, grant) == (
        AuthorizationErrorCode.EXPIRED,
        "the authorization expired during the request",
    )


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        (_scope(vault_id="v_another"), "the authorization is for another vault"),
        (_scope(fields=frozenset({"first_name"})), "the authorization covers other fields"),
        (_scope(expressions={"age": "date(dob).age()"}), "the authorization covers other expressions"),
        (_scope(operation="rotate"), "the authorization is for another operation"),
        (_scope(parameters={"k": "v"}), "the authorization covers other parameters"),
    ],
)
def test_each_mismatch_is_named(scope: RequestScope, message: str) -> None:
    assert _refused(_verifier().verify, _signed(), scope) == (AuthorizationErrorCode.MISMATCH, message)


def test_the_signature_refusal_is_named() -> None:
    signed = _signed()
    other = _signed(request_id="req-2")
    forged = SignedAuthorization(signed.claims, other.signature, signed.public_key)
    assert _refused(_verifier().verify, forged, _scope()) == (
        AuthorizationErrorCode.SIGNATURE_INVALID,
        "the authorization's signature does not verify",
    )


def test_a_replay_is_refused_until_the_expiry_included() -> None:
    replayed = (AuthorizationErrorCode.REPLAYED, "the authorization's request id was already used")
    cache = ReplayCache()
    cache.admit("a", NOW + 10, NOW)
    assert _refused(cache.admit, "a", NOW + 20, NOW + 10) == replayed
    cache.admit("a", NOW + 20, NOW + 10.001)
    assert _refused(cache.admit, "a", NOW + 30, NOW + 20) == replayed


def test_a_full_replay_cache_forgets_only_ids_past_their_expiry() -> None:
    full = (AuthorizationErrorCode.REPLAY_CACHE_FULL, "too many authorizations in flight")
    cache = ReplayCache(capacity=1)
    cache.admit("a", NOW + 10, NOW)
    # At "a"'s expiry it could still be replayed by the cache's own rule, so it is kept.
    assert _refused(cache.admit, "b", NOW + 20, NOW + 10) == full
    assert len(cache) == 1
    cache.admit("b", NOW + 20, NOW + 10.001)
    assert len(cache) == 1
    assert _refused(cache.admit, "b", NOW + 20, NOW + 11)[0] is AuthorizationErrorCode.REPLAYED


def test_the_verifier_uses_the_replay_cache_it_is_given() -> None:
    cache = ReplayCache()
    _verifier(cache=cache).verify(_signed(), _scope())
    assert len(cache) == 1
    # Another verifier over the same cache (another worker of one enclave) refuses the replay.
    assert _refused(_verifier(cache=cache).verify, _signed(), _scope())[0] is AuthorizationErrorCode.REPLAYED
    full = ReplayCache(capacity=0)
    assert _refused(_verifier(cache=full).verify, _signed(), _scope())[0] is (
        AuthorizationErrorCode.REPLAY_CACHE_FULL
    )


def test_wire_refusals_are_named() -> None:
    assert _refused(SignedAuthorization.from_wire, None) == (
        AuthorizationErrorCode.MISSING,
        "the request carries no authorization",
    )
    good = _signed().to_wire()
    for name in ("claims", "signature", "public_key"):
        value = getattr(good, name)
        expected = (MALFORMED, f"authorization {name} is not base64")
        # Characters outside the alphabet are refused, not skipped: the rest would decode.
        for bad in (value[:4] + "\n" + value[4:], value[:4] + "*" + value[4:], "é" + value):
            wire = AuthorizationWire(**{**good.model_dump(), name: bad})
            assert _refused(SignedAuthorization.from_wire, wire) == expected


def test_the_wire_form_shows_no_value() -> None:
    wire = _signed().to_wire()
    assert repr(wire) == str(wire) == "AuthorizationWire(...)"
