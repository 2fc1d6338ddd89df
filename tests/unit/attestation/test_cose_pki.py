"""COSE_Sign1/ES384 (hand-checked structure and an independent implementation) and the test PKI."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from emulator.nitro.cose import CoseError, decode_sign1, sign1, verify_sign1
from emulator.nitro.pki import PkiError, TestPki, issue, verify_chain

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def test_sign1_structure_is_the_nitro_layout(p384: ec.EllipticCurvePrivateKey) -> None:
    message = sign1(b"payload", p384)
    # Untagged array of 4, protected = bstr(a1 01 38 22) = {1: -35}, unprotected = {}.
    assert message[:7] == bytes.fromhex("8444a1013822a0")
    protected, unprotected, payload, signature = cbor2.loads(message)
    assert (protected, unprotected, payload, len(signature)) == (b"\xa1\x01\x38\x22", {}, b"payload", 96)
    # The signature is raw r||s over Sig_structure ["Signature1", protected, h'', payload].
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", b"payload"])
    r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
    p384.public_key().verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA384()))
    assert verify_sign1(message, p384.public_key()) == b"payload"


def test_tagged_form_verifies(p384: ec.EllipticCurvePrivateKey) -> None:
    message = sign1(b"x", p384, tagged=True)
    assert message[0] == 0xD2  # tag 18
    assert verify_sign1(message, p384.public_key()) == b"x"


def test_tampering_and_wrong_keys_are_refused(p384: ec.EllipticCurvePrivateKey) -> None:
    protected, unprotected, _, signature = cbor2.loads(sign1(b"payload", p384))
    tampered = cbor2.dumps([protected, unprotected, b"payloaD", signature])
    with pytest.raises(CoseError, match="does not verify"):
        verify_sign1(tampered, p384.public_key())
    with pytest.raises(CoseError, match="does not verify"):
        verify_sign1(sign1(b"payload", p384), ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(CoseError, match="P-384"):
        verify_sign1(sign1(b"payload", p384), ec.generate_private_key(ec.SECP256R1()).public_key())


@pytest.mark.parametrize(
    ("header", "unprotected", "refusal"),
    [
        ({1: -7}, {}, "ES384"),  # ES256 named
        ({1: -35, 2: [99]}, {}, "critical"),
        ({}, {1: -35}, "ES384"),  # algorithm only in the unprotected header
    ],
)
def test_header_rules(
    p384: ec.EllipticCurvePrivateKey, header: dict, unprotected: dict, refusal: str
) -> None:
    protected = cbor2.dumps(header)
    signed = p384.sign(cbor2.dumps(["Signature1", protected, b"", b"p"]), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(signed)
    message = cbor2.dumps([protected, unprotected, b"p", r.to_bytes(48, "big") + s.to_bytes(48, "big")])
    with pytest.raises(CoseError, match=refusal):
        verify_sign1(message, p384.public_key())


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x83\x40\xa0\x40",
        cbor2.dumps([b"", {}, "text", b""]),
        cbor2.dumps(cbor2.CBORTag(98, [])),
        b"\xff",
    ],
)
def test_malformed_messages(message: bytes) -> None:
    with pytest.raises(CoseError):
        decode_sign1(message)


def test_interoperates_with_pycose(p384: ec.EllipticCurvePrivateKey) -> None:
    pycose_messages = pytest.importorskip("pycose.messages")
    from pycose.algorithms import Es384
    from pycose.headers import Algorithm
    from pycose.keys.curves import P384
    from pycose.keys.ec2 import EC2Key

    numbers = p384.private_numbers()
    key = EC2Key(
        crv=P384,
        x=numbers.public_numbers.x.to_bytes(48, "big"),
        y=numbers.public_numbers.y.to_bytes(48, "big"),
        d=numbers.private_value.to_bytes(48, "big"),
    )
    # Ours → pycose.
    ours = pycose_messages.Sign1Message.from_cose_obj(cbor2.loads(sign1(b"attested", p384)), True)
    ours.key = key
    assert ours.verify_signature() and ours.payload == b"attested"
    # pycose → ours.
    theirs = pycose_messages.Sign1Message(phdr={Algorithm: Es384}, payload=b"from pycose")
    theirs.key = key
    assert verify_sign1(theirs.encode(tag=False), p384.public_key()) == b"from pycose"
    assert verify_sign1(theirs.encode(tag=True), p384.public_key()) == b"from pycose"


# -- PKI -------------------------------------------------------------------------------------


def test_pki_persists_and_reloads(tmp_path: Path) -> None:
    created = TestPki.load_or_create(tmp_path / "pki")
    reloaded = TestPki.load_or_create(tmp_path / "pki")
    for role in ("root", "regional", "zonal", "image_signing"):
        assert getattr(reloaded, role).der == getattr(created, role).der, role
    for key_file in (tmp_path / "pki").glob("*.key"):
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # The instance CA is issued per process, under the persisted zonal certificate.
    signer = reloaded.issue_enclave_signer("i-0e1a2b3c4d5e6f708-enc0123456789abcdef")
    assert signer.cabundle[:3] == (created.root.der, created.regional.der, created.zonal.der)
    intermediates = [x509.load_der_x509_certificate(der) for der in signer.cabundle[1:]]
    verify_chain(signer.leaf.certificate, intermediates, created.root.certificate, NOW)


def test_a_directory_with_the_old_two_level_chain_is_migrated(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = TestPki.load_or_create(directory)
    # The old layout: root, one intermediate, the image signing certificate.
    (directory / "intermediate.pem").write_bytes(first.zonal.certificate.public_bytes(Encoding.PEM))
    (directory / "intermediate.key").write_bytes((directory / "zonal.key").read_bytes())
    for name in ("regional.pem", "regional.key", "zonal.pem", "zonal.key"):
        (directory / name).unlink()
    migrated = TestPki.load_or_create(directory)
    # A new chain, root included; PCR8's certificate stays (the image measurement depends on it).
    assert migrated.root.der != first.root.der
    assert migrated.image_signing.der == first.image_signing.der
    assert not (directory / "intermediate.pem").exists() and not (directory / "intermediate.key").exists()
    assert TestPki.load_or_create(directory).root.der == migrated.root.der


def test_another_region_gets_its_own_regional_and_zonal_certificates(tmp_path: Path) -> None:
    east = TestPki.load_or_create(tmp_path / "pki")
    west = TestPki.load_or_create(tmp_path / "pki", region="eu-west-1")
    assert west.root.der == east.root.der
    assert west.regional.der != east.regional.der and west.zonal.der != east.zonal.der
    assert ".eu-west-1.aws.nitro-enclaves" in west.regional.certificate.subject.rfc4514_string()
    leaf = west.issue_leaf("i-0e1a2b3c4d5e6f708-enc0123456789abcdef").certificate
    assert leaf.subject.rfc4514_string().startswith(
        "CN=i-0e1a2b3c4d5e6f708-enc0123456789abcdef.eu-west-1.aws,"
    )
    verify_chain(leaf, west.intermediates, east.root.certificate, NOW)


def test_chain_verification_refusals(pki: TestPki, other_pki: TestPki) -> None:
    leaf = pki.issue_leaf("enclave").certificate
    intermediates = pki.intermediates
    assert len(intermediates) == 3  # regional, zonal, instance
    verify_chain(leaf, intermediates, pki.root.certificate, NOW)
    with pytest.raises(PkiError, match="does not verify"):
        verify_chain(leaf, intermediates, other_pki.root.certificate, NOW)  # wrong root
    with pytest.raises(PkiError, match="does not verify"):
        verify_chain(leaf, [], pki.root.certificate, NOW)  # no intermediates
    for missing in range(3):
        with pytest.raises(PkiError, match="does not verify"):
            verify_chain(
                leaf, [c for i, c in enumerate(intermediates) if i != missing], pki.root.certificate, NOW
            )
    with pytest.raises(PkiError, match="not valid at validation time"):
        verify_chain(leaf, intermediates, pki.root.certificate, NOW + dt.timedelta(hours=4))  # expired
    with pytest.raises(PkiError, match="not valid at validation time"):
        verify_chain(leaf, intermediates, pki.root.certificate, NOW - dt.timedelta(hours=1))  # not yet valid
    # A leaf may not sign certificates: a "leaf" CA under it is refused.
    fake_ca = issue("rogue", issuer=pki.issue_leaf("leaf"), ca=False)
    with pytest.raises(PkiError):
        verify_chain(fake_ca.certificate, [leaf, *intermediates], pki.root.certificate, NOW)
    # The instance CA has path length 0: a CA below it cannot issue a valid leaf.
    below_instance = issue("rogue CA", issuer=pki.instance_ca(), ca=True, path_length=0)
    rogue_leaf = issue("rogue leaf", issuer=below_instance, ca=False)
    with pytest.raises(PkiError, match="does not verify"):
        verify_chain(
            rogue_leaf.certificate, [below_instance.certificate, *intermediates], pki.root.certificate, NOW
        )


def test_chain_requires_p384_and_sha384(pki: TestPki) -> None:
    issuer = pki.instance_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p256 leaf")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=1))
        .not_valid_after(NOW + dt.timedelta(hours=1))
        .sign(issuer.key, hashes.SHA384())
    )
    with pytest.raises(PkiError, match="not P-384"):
        verify_chain(certificate, pki.intermediates, pki.root.certificate, NOW)
