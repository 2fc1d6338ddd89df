"""COSE_Sign1 (RFC 9052) refusals, each with its exact message; messages built with cbor2 and
signed with cryptography, not with the module under test."""

from __future__ import annotations

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from emulator.nitro.cose import CoseError, Sign1, decode_sign1, sig_structure, sign1, verify_sign1

ES384 = b"\xa1\x01\x38\x22"  # {1: -35}


@pytest.fixture
def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def raw_signature(
    key: ec.EllipticCurvePrivateKey, protected: bytes, payload: bytes, aad: bytes = b""
) -> bytes:
    der = key.sign(cbor2.dumps(["Signature1", protected, aad, payload]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(48, "big") + s.to_bytes(48, "big")


def message(
    key: ec.EllipticCurvePrivateKey,
    protected: bytes = ES384,
    unprotected: object = None,
    payload: bytes = b"p",
) -> bytes:
    header = {} if unprotected is None else unprotected
    return cbor2.dumps([protected, header, payload, raw_signature(key, protected, payload)])


def test_sig_structure_is_the_rfc_layout() -> None:
    assert sig_structure(ES384, b"pay") == cbor2.dumps(["Signature1", ES384, b"", b"pay"])
    assert sig_structure(ES384, b"pay", b"aad") == cbor2.dumps(["Signature1", ES384, b"aad", b"pay"])
    sign = Sign1(ES384, {1: -35}, {}, b"pay", b"")
    assert sign.sig_structure() == cbor2.dumps(["Signature1", ES384, b"", b"pay"])
    assert sign.sig_structure(b"aad") == cbor2.dumps(["Signature1", ES384, b"aad", b"pay"])


def test_sign1_output_verifies_under_an_independent_check(p384: ec.EllipticCurvePrivateKey) -> None:
    for _ in range(8):  # r or s below 2^376 now and then: fixed 48-byte coordinates still
        protected, unprotected, payload, signature = cbor2.loads(sign1(b"doc", p384))
        assert (protected, unprotected, payload, len(signature)) == (ES384, {}, b"doc", 96)
    tagged = cbor2.loads(sign1(b"doc", p384, tagged=True))
    assert isinstance(tagged, cbor2.CBORTag) and tagged.tag == 18
    assert verify_sign1(sign1(b"doc", p384, tagged=False), p384.public_key()) == b"doc"
    assert cbor2.loads(sign1(b"doc", p384))[0] == ES384


def test_signing_with_another_curve_is_refused() -> None:
    with pytest.raises(CoseError, match=r"^ES384 needs a P-384 key$"):
        sign1(b"p", ec.generate_private_key(ec.SECP256R1()))


def test_a_foreign_message_verifies(p384: ec.EllipticCurvePrivateKey) -> None:
    assert verify_sign1(message(p384, payload=b"hello"), p384.public_key()) == b"hello"
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(message(p384))))
    assert verify_sign1(tagged, p384.public_key()) == b"p"
    parsed = decode_sign1(message(p384, payload=b"x"))
    assert verify_sign1(parsed, p384.public_key()) == b"x"
    assert (parsed.protected, dict(parsed.protected_header), dict(parsed.unprotected_header)) == (
        ES384,
        {1: -35},
        {},
    )


@pytest.mark.parametrize(
    ("raw", "refusal"),
    [
        (b"", "not CBOR: CBORDecodeEOF"),
        (b"\xff", "not CBOR: CBORDecodeError"),
        (cbor2.dumps(cbor2.CBORTag(17, [ES384, {}, b"p", b"s"])), "unexpected CBOR tag 17"),
        (cbor2.dumps(cbor2.CBORTag(98, [])), "unexpected CBOR tag 98"),
        (cbor2.dumps([ES384, {}, b"p"]), "not a COSE_Sign1 array"),
        (cbor2.dumps([ES384, {}, b"p", b"s", b"x"]), "not a COSE_Sign1 array"),
        (cbor2.dumps({"a": 1}), "not a COSE_Sign1 array"),
        (cbor2.dumps(cbor2.CBORTag(18, [ES384, {}, b"p"])), "not a COSE_Sign1 array"),
        (cbor2.dumps(["text", {}, b"p", b"s"]), "malformed COSE_Sign1 headers"),
        (cbor2.dumps([ES384, [], b"p", b"s"]), "malformed COSE_Sign1 headers"),
        (cbor2.dumps([ES384, {}, "p", b"s"]), "COSE_Sign1 payload and signature must be byte strings"),
        (cbor2.dumps([ES384, {}, b"p", "s"]), "COSE_Sign1 payload and signature must be byte strings"),
        (cbor2.dumps([b"\xff", {}, b"p", b"s"]), "the protected header is not CBOR"),
        (cbor2.dumps([b"\xa1", {}, b"p", b"s"]), "the protected header is not CBOR"),
        (cbor2.dumps([cbor2.dumps([1, -35]), {}, b"p", b"s"]), "the protected header is not a map"),
    ],
)
def test_malformed_messages_are_refused_with_their_reason(raw: bytes, refusal: str) -> None:
    with pytest.raises(CoseError) as refused:
        decode_sign1(raw)
    assert str(refused.value) == refusal


def test_an_empty_protected_header_is_an_empty_map(p384: ec.EllipticCurvePrivateKey) -> None:
    assert dict(decode_sign1(cbor2.dumps([b"", {}, b"p", b"s"])).protected_header) == {}
    with pytest.raises(CoseError, match=r"^the protected header does not name ES384$"):
        verify_sign1(message(p384, protected=b""), p384.public_key())


@pytest.mark.parametrize(
    ("protected", "unprotected", "refusal"),
    [
        (cbor2.dumps({1: -7}), {}, "the protected header does not name ES384"),
        (cbor2.dumps({}), {1: -35}, "the protected header does not name ES384"),
        (cbor2.dumps({1: -35, 2: [99]}), {}, "critical header parameters are not supported"),
        (cbor2.dumps({1: -35, 2: []}), {}, "critical header parameters are not supported"),
        (ES384, {1: -35}, "the algorithm must be a protected header parameter"),
        (ES384, {1: -7}, "the algorithm must be a protected header parameter"),
    ],
)
def test_header_rules_with_their_reason(
    p384: ec.EllipticCurvePrivateKey, protected: bytes, unprotected: dict, refusal: str
) -> None:
    with pytest.raises(CoseError) as refused:
        verify_sign1(message(p384, protected, unprotected), p384.public_key())
    assert str(refused.value) == refusal


def test_other_unprotected_parameters_are_ignored(p384: ec.EllipticCurvePrivateKey) -> None:
    assert verify_sign1(message(p384, unprotected={4: b"kid"}), p384.public_key()) == b"p"


@pytest.mark.parametrize("length", [0, 95, 97, 192])
def test_a_signature_of_another_length_is_refused(p384: ec.EllipticCurvePrivateKey, length: int) -> None:
    good = raw_signature(p384, ES384, b"p")
    signature = (good * 2)[:length]
    with pytest.raises(CoseError, match=r"^an ES384 signature is 96 bytes$"):
        verify_sign1(cbor2.dumps([ES384, {}, b"p", signature]), p384.public_key())


def test_swapped_or_tampered_signatures_do_not_verify(p384: ec.EllipticCurvePrivateKey) -> None:
    good = raw_signature(p384, ES384, b"p")
    for signature in (good[48:] + good[:48], good[:-1] + bytes([good[-1] ^ 1]), bytes(96)):
        with pytest.raises(CoseError) as refused:
            verify_sign1(cbor2.dumps([ES384, {}, b"p", signature]), p384.public_key())
        assert str(refused.value) == "the signature does not verify"


def test_verifying_with_another_curve_is_refused(p384: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(CoseError, match=r"^ES384 needs a P-384 key$"):
        verify_sign1(message(p384), ec.generate_private_key(ec.SECP256R1()).public_key())
