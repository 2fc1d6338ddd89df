"""Contract tests: real Nitro attestation documents, and the emulator's held against them.

The fixtures (see ``fixtures/README.md``) are documents made by Nitro hardware and
published in public repositories. The project's verifier must accept them against the
AWS root at their own time, and the emulator's documents must have their shape, so that
a verifier written against real documents accepts the emulator's.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from emulator.nitro.attestation import (
    AttestationDocument,
    AttestationError,
    DocumentVerifier,
    verify_document,
)
from emulator.nitro.cose import decode_sign1
from emulator.nitro.nsm import NsmService
from emulator.nitro.pki import CHAIN, PROFILES, TestPki, leaf_serial
from vault.enclave.nsm import SocketNsm

from .conftest import MEASUREMENTS, PCR3

FIXTURES = Path(__file__).parent / "fixtures"
MAX_AGE = dt.timedelta(minutes=5)
AWS_ROOT = x509.load_pem_x509_certificate((FIXTURES / "aws-nitro-enclaves-root-g1.pem").read_bytes())
#: The documents and how their payload map is framed: indefinite length since 2025.
REAL = {
    "sparsity-aws-nitro-enclave-attestation-2023-09-28": "definite",
    "blocky-nitrite-2024-09-07": "definite",
    "blocky-nitrite-debug-2024-09-07": "definite",
    "espresso-tee-contracts-debug-2025-06-27": "indefinite",
    "base-nitro-validator-2026-01-03": "indefinite",
}
CURRENT = [name for name, framing in REAL.items() if framing == "indefinite"]
#: In 2023 AWS's instance certificates had no key identifiers; from 2024 on they do.
WITH_KEY_IDENTIFIERS = [name for name in REAL if "2023" not in name]
ROLES = tuple(profile.role for profile in CHAIN)
KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def real_message(name: str) -> bytes:
    return base64.b64decode((FIXTURES / f"{name}.b64").read_text().strip())


def parsed(message: bytes) -> AttestationDocument:
    return AttestationDocument.from_cbor(decode_sign1(message).payload)


def chain_of(document: AttestationDocument) -> list[x509.Certificate]:
    """root, regional, zonal, instance, leaf."""
    return [x509.load_der_x509_certificate(der) for der in (*document.cabundle, document.certificate)]


def common_name(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# -- real documents verify ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REAL))
def test_real_documents_verify_against_the_aws_root_at_their_own_time(name: str) -> None:
    message = real_message(name)
    issued = parsed(message).timestamp
    document = verify_document(message, AWS_ROOT, now=issued, max_age=MAX_AGE)
    assert DocumentVerifier().verify(message, AWS_ROOT, now=issued + dt.timedelta(minutes=1), max_age=MAX_AGE)
    assert document.digest == "SHA384" and sorted(document.pcrs) == list(range(16))
    assert document.cabundle[0] == AWS_ROOT.public_bytes(Encoding.DER)
    # Once the leaf has expired the chain no longer verifies, whatever the freshness allowance.
    later = chain_of(document)[-1].not_valid_after_utc + dt.timedelta(seconds=1)
    with pytest.raises(AttestationError) as expired:
        verify_document(message, AWS_ROOT, now=later, max_age=dt.timedelta(days=1))
    assert expired.value.reason == "chain"


@pytest.mark.parametrize("name", list(REAL))
def test_real_documents_are_not_trusted_under_the_emulator_root(name: str, pki: TestPki) -> None:
    message = real_message(name)
    with pytest.raises(AttestationError) as refused:
        verify_document(message, pki.root.certificate, now=parsed(message).timestamp, max_age=MAX_AGE)
    assert refused.value.reason == "chain"


@pytest.mark.parametrize("name", list(REAL))
def test_a_changed_real_document_is_refused(name: str) -> None:
    message = real_message(name)
    envelope = decode_sign1(message)
    payload = cbor2.loads(envelope.payload)
    payload["pcrs"][0] = bytes(48) if payload["pcrs"][0] != bytes(48) else b"\x01" * 48
    changed = cbor2.dumps([envelope.protected, {}, cbor2.dumps(payload), envelope.signature])
    with pytest.raises(AttestationError) as refused:
        verify_document(changed, AWS_ROOT, now=parsed(message).timestamp, max_age=MAX_AGE)
    assert refused.value.reason == "signature"


@pytest.mark.parametrize("name", list(REAL))
def test_the_encoder_reproduces_real_payloads_byte_for_byte(name: str) -> None:
    """Key order, null optionals, definite inner items; the map framed as the document's era framed it."""
    payload = decode_sign1(real_message(name)).payload
    indefinite = REAL[name] == "indefinite"
    assert payload[0] == (0xBF if indefinite else 0xA9)
    assert AttestationDocument.from_cbor(payload).to_cbor(indefinite=indefinite) == payload


@pytest.mark.parametrize("name", list(REAL))
def test_the_pki_table_describes_the_real_chain(name: str) -> None:
    """Each real certificate matches its row of the table in emulator.nitro.pki."""
    document = parsed(real_message(name))
    for role, certificate in zip(ROLES, chain_of(document), strict=True):
        shape = certificate_shape(certificate)
        profile = PROFILES[role]
        assert shape.subject == tuple(oid.dotted_string for oid in profile.subject), role
        assert shape.basic_constraints == (profile.ca, profile.path_length), role
        assert shape.key_usage == (tuple(sorted(profile.key_usage)), profile.key_usage_critical), role
        assert shape.serial_bytes == profile.serial_bytes, role
        expected = tuple(oid.dotted_string for oid in profile.extensions)
        if role == "instance" and name not in WITH_KEY_IDENTIFIERS:
            identifiers = {
                ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string,
                ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
            }
            expected = tuple(oid for oid in expected if oid not in identifiers)
        assert tuple(oid for oid, _ in shape.extensions) == expected, role


@pytest.mark.parametrize("name", list(REAL))
def test_real_leaf_serials_are_the_enclave_id_and_the_issuing_second(name: str) -> None:
    document = parsed(real_message(name))
    leaf = chain_of(document)[-1]
    # AWS's leaves start 3 s before the second in their serial and end 3 h after it.
    issued = leaf.not_valid_after_utc - dt.timedelta(hours=3)
    assert leaf_serial(document.module_id, issued) == leaf.serial_number


# -- the emulator's documents have the real ones' shape -----------------------------------------


@dataclass(frozen=True)
class CertificateShape:
    subject: tuple[str, ...]
    #: (OID, critical) in order.
    extensions: tuple[tuple[str, bool], ...]
    basic_constraints: tuple[bool, int | None]
    key_usage: tuple[tuple[str, ...], bool] | None
    crl_points: int
    serial_bytes: int
    signature_hash: str
    curve: str
    #: The common name with hex runs, the region and instance ids replaced by placeholders.
    name_pattern: str


def _name_pattern(name: str) -> str:
    name = re.sub(r"i-[0-9a-f]{17}-enc[0-9a-f]{16}", "<module>", name)
    name = re.sub(r"i-[0-9a-f]{17}", "<instance>", name)
    name = re.sub(r"[a-z]{2}(-gov)?-[a-z]+-\d", "<region>", name)
    name = re.sub(r"^[0-9a-f]{15,16}\.", "<hex>.", name)
    # The partition's name (aws, or the emulator's own) before ".nitro-enclaves" of the root.
    return re.sub(r"^[a-z0-9-]+\.nitro-enclaves$", "<partition>.nitro-enclaves", name)


def certificate_shape(certificate: x509.Certificate) -> CertificateShape:
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    try:
        usage_extension = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        usage: tuple[tuple[str, ...], bool] | None = None
    else:
        bits = tuple(sorted(bit for bit in KEY_USAGE_BITS if getattr(usage_extension.value, bit)))
        usage = (bits, usage_extension.critical)
    try:
        points = len(certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value)
    except x509.ExtensionNotFound:
        points = 0
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and certificate.signature_hash_algorithm is not None
    return CertificateShape(
        subject=tuple(attribute.oid.dotted_string for attribute in certificate.subject),
        extensions=tuple((e.oid.dotted_string, e.critical) for e in certificate.extensions),
        basic_constraints=(constraints.ca, constraints.path_length),
        key_usage=usage,
        crl_points=points,
        serial_bytes=(certificate.serial_number.bit_length() + 7) // 8,
        signature_hash=certificate.signature_hash_algorithm.name,
        curve=key.curve.name,
        name_pattern=_name_pattern(common_name(certificate)),
    )


@dataclass(frozen=True)
class DocumentShape:
    envelope: tuple[Any, ...]
    map_header: int
    #: (key, CBOR value type) in order.
    fields: tuple[tuple[str, str], ...]
    pcrs: tuple[tuple[int, int], ...]
    chain: tuple[CertificateShape, ...]


def document_shape(message: bytes) -> DocumentShape:
    protected, unprotected, payload, signature = cbor2.loads(message)
    data = cbor2.loads(payload)
    return DocumentShape(
        # The first bytes: array(4), bstr(4) {1: -35}, {}; then the payload's bstr head and the signature.
        envelope=(message[:7].hex(), message[7], cbor2.loads(protected), unprotected, len(signature)),
        map_header=payload[0],
        fields=tuple((key, type(value).__name__) for key, value in data.items()),
        pcrs=tuple((index, len(value)) for index, value in data["pcrs"].items()),
        chain=tuple(certificate_shape(c) for c in chain_of(AttestationDocument.from_cbor(payload))),
    )


def emulator_document_like(name: str, pki: TestPki, directory: Path, *, debug_mode: bool = False) -> bytes:
    """An emulator document with the same optional fields present as the real document ``name``."""
    real = parsed(real_message(name))
    with NsmService(pki, directory) as service:
        path = service.register_enclave(
            "i-0e1a2b3c4d5e6f708-enc019b8596b1a9dad6", MEASUREMENTS, PCR3, debug_mode=debug_mode
        )
        return SocketNsm(path).attestation(
            public_key=b"k" * len(real.public_key) if real.public_key is not None else None,
            user_data=b"u" * len(real.user_data) if real.user_data is not None else None,
            nonce=b"n" * len(real.nonce) if real.nonce is not None else None,
        )


@pytest.mark.parametrize("name", CURRENT)
def test_emulator_documents_have_the_shape_of_current_hardware(
    name: str, pki: TestPki, short_dir: Path
) -> None:
    ours = document_shape(emulator_document_like(name, pki, short_dir / "nsm"))
    theirs = document_shape(real_message(name))
    assert ours.envelope == theirs.envelope
    assert ours.map_header == theirs.map_header == 0xBF
    assert ours.fields == theirs.fields
    assert ours.pcrs == theirs.pcrs
    assert len(ours.chain) == len(theirs.chain) == 5
    for role, mine, real in zip(ROLES, ours.chain, theirs.chain, strict=True):
        assert mine == real, role


@pytest.mark.parametrize("name", WITH_KEY_IDENTIFIERS)
def test_the_emulator_chain_has_the_shape_of_real_chains(name: str, pki: TestPki) -> None:
    signer = pki.issue_enclave_signer("i-0e1a2b3c4d5e6f708-enc019b8596b1a9dad6")
    ours = [x509.load_der_x509_certificate(der) for der in (*signer.cabundle, signer.leaf.der)]
    theirs = chain_of(parsed(real_message(name)))
    for role, mine, real in zip(ROLES, ours, theirs, strict=True):
        assert certificate_shape(mine) == certificate_shape(real), role


def test_debug_mode_zeroes_what_real_debug_documents_zero(pki: TestPki, short_dir: Path) -> None:
    zero = bytes(48)
    for name in (n for n in REAL if "debug" in n):
        real = parsed(real_message(name))
        ours = parsed(emulator_document_like(name, pki, short_dir / "nsm", debug_mode=True))
        for document in (real, ours):
            assert all(document.pcrs[index] == zero for index in (0, 1, 2, 8)), name
            assert document.pcrs[4] != zero, name
    # The 2025 document's enclave had an IAM role, as the emulator's has: PCR3 stays.
    assert parsed(real_message("espresso-tee-contracts-debug-2025-06-27")).pcrs[3] != zero
    assert ours.pcr_hex(3) == PCR3


# -- a verifier written against real documents ---------------------------------------------------


class StrictVerifierError(ValueError):
    pass


_REFERENCE = chain_of(parsed(real_message("base-nitro-validator-2026-01-03")))
_EXPECTED = {role: certificate_shape(c) for role, c in zip(ROLES, _REFERENCE, strict=True)}


def strict_verify(message: bytes, trusted_root: x509.Certificate, at: dt.datetime) -> AttestationDocument:
    """What a careful third-party verifier might check beyond the signature and the chain."""
    document = verify_document(message, trusted_root, now=at, max_age=MAX_AGE)
    if len(document.cabundle) != 4:
        raise StrictVerifierError(
            f"expected root, regional, zonal and instance, got {len(document.cabundle)}"
        )
    chain = chain_of(document)
    for role, certificate in zip(ROLES, chain, strict=True):
        shape = certificate_shape(certificate)
        expected = _EXPECTED[role]
        for field in (
            "extensions",
            "basic_constraints",
            "key_usage",
            "crl_points",
            "subject",
            "name_pattern",
        ):
            if getattr(shape, field) != getattr(expected, field):
                raise StrictVerifierError(f"the {role} certificate's {field} is not as AWS issues it")
    region = common_name(chain[1]).split(".")[1]
    instance = document.module_id.split("-enc")[0]
    names = [common_name(c) for c in chain[1:]]
    if names[1].split(".")[2] != region or names[2] != f"{instance}.{region}.aws.nitro-enclaves":
        raise StrictVerifierError("the zonal or instance certificate is for another region or instance")
    if names[3] != f"{document.module_id}.{region}.aws":
        raise StrictVerifierError("the leaf is not the module's")
    if (chain[-1].serial_number.bit_length() + 7) // 8 != 16:
        raise StrictVerifierError("the leaf serial is not 16 bytes")
    return document


@pytest.mark.parametrize("name", WITH_KEY_IDENTIFIERS)
def test_the_strict_verifier_accepts_real_documents(name: str) -> None:
    message = real_message(name)
    strict_verify(message, AWS_ROOT, parsed(message).timestamp)


def test_the_strict_verifier_accepts_the_emulator_documents(pki: TestPki, short_dir: Path) -> None:
    with NsmService(pki, short_dir / "nsm") as service:
        message = SocketNsm(service.register_enclave("enc-strict", MEASUREMENTS, PCR3)).attestation(
            public_key=b"k"
        )
    document = strict_verify(message, pki.root.certificate, now())
    assert document.public_key == b"k"


def test_the_strict_verifier_is_strict(pki: TestPki) -> None:
    signer = pki.issue_enclave_signer("i-0e1a2b3c4d5e6f708-enc019b8596b1a9dad6")
    fields: dict[str, Any] = {
        "module_id": "i-0e1a2b3c4d5e6f708-enc019b8596b1a9dad6",
        "timestamp_ms": int(now().timestamp() * 1000),
        "pcrs": parsed(real_message("base-nitro-validator-2026-01-03")).pcrs,
        "certificate": signer.leaf.der,
        "cabundle": signer.cabundle,
    }
    strict_verify(AttestationDocument(**fields).sign(signer.leaf.key), pki.root.certificate, now())
    # A repeated certificate: the chain still builds, the bundle is not AWS's.
    padded = {**fields, "cabundle": (*signer.cabundle, signer.cabundle[-1])}
    message = AttestationDocument(**padded).sign(signer.leaf.key)
    verify_document(message, pki.root.certificate, now=now(), max_age=MAX_AGE)
    with pytest.raises(StrictVerifierError, match="got 5"):
        strict_verify(message, pki.root.certificate, now())
    # A leaf for another module.
    other = {**fields, "module_id": "i-0e1a2b3c4d5e6f708-enc0000000000000001"}
    with pytest.raises(StrictVerifierError, match="not the module's"):
        strict_verify(AttestationDocument(**other).sign(signer.leaf.key), pki.root.certificate, now())
