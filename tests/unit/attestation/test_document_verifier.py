"""DocumentVerifier: verify_document's verdicts, with what does not depend on time verified once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

import emulator.nitro.attestation as attestation
from emulator.nitro.attestation import (
    AttestationDocument,
    AttestationError,
    DocumentVerifier,
    verify_document,
)
from emulator.nitro.nsm import NsmService, enclave_pcrs
from emulator.nitro.pki import CertifiedKey, TestPki, issue
from vault.enclave.nsm import SocketNsm

from .conftest import MEASUREMENTS, PCR3

MAX_AGE = dt.timedelta(minutes=5)
FIXTURES = Path(__file__).parent / "fixtures"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def document(pki: TestPki, short_dir: Path) -> bytes:
    with NsmService(pki, short_dir / "nsm") as service:
        return SocketNsm(service.register_enclave("enc-cache", MEASUREMENTS, PCR3)).attestation(
            public_key=b"k"
        )


@pytest.fixture
def chain_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts full verifications (certificate chain checks)."""
    calls: list[int] = []
    real = attestation.verify_chain

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(attestation, "verify_chain", counting)
    return calls


def test_a_known_document_is_verified_once(document: bytes, pki: TestPki, chain_checks: list[int]) -> None:
    verifier = DocumentVerifier()
    first = verifier.verify(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    again = verifier.verify(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert again == first == verify_document(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert len(chain_checks) == 2  # the verifier's first call and the direct one


def test_time_is_checked_on_every_call(document: bytes, pki: TestPki, chain_checks: list[int]) -> None:
    verifier = DocumentVerifier()
    verifier.verify(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    with pytest.raises(AttestationError) as stale:
        verifier.verify(document, pki.root.certificate, now=now() + dt.timedelta(minutes=6), max_age=MAX_AGE)
    assert stale.value.reason == "stale"
    with pytest.raises(AttestationError) as future:
        verifier.verify(document, pki.root.certificate, now=now() - dt.timedelta(minutes=3), max_age=MAX_AGE)
    assert future.value.reason == "stale"
    # Past the leaf certificate's end the chain no longer verifies, however old a document may be.
    later = now() + dt.timedelta(days=2)
    with pytest.raises(AttestationError) as expired:
        verifier.verify(document, pki.root.certificate, now=later, max_age=dt.timedelta(days=3))
    assert expired.value.reason == "chain"
    assert len(chain_checks) == 2  # the first call, and the one outside the certificates' validity


def test_another_root_is_another_verification(document: bytes, pki: TestPki, other_pki: TestPki) -> None:
    verifier = DocumentVerifier()
    verifier.verify(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    with pytest.raises(AttestationError) as refused:
        verifier.verify(document, other_pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert refused.value.reason == "chain"


def test_refusals_are_not_remembered(document: bytes, pki: TestPki, chain_checks: list[int]) -> None:
    verifier = DocumentVerifier()
    tampered = bytearray(document)
    tampered[-1] ^= 1
    for _ in range(2):
        with pytest.raises(AttestationError) as refused:
            verifier.verify(bytes(tampered), pki.root.certificate, now=now(), max_age=MAX_AGE)
        assert refused.value.reason == "signature"
    assert len(chain_checks) == 2


def test_the_memory_is_bounded(pki: TestPki, short_dir: Path) -> None:
    verifier = DocumentVerifier(max_entries=2)
    with NsmService(pki, short_dir / "nsm") as service:
        nsm = SocketNsm(service.register_enclave("enc-many", MEASUREMENTS, PCR3))
        documents = [nsm.attestation(nonce=bytes([i])) for i in range(4)]
    for document in documents:
        verifier.verify(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert len(verifier) == 2


# -- a bundle holding only the root: the chain check cannot be skipped ------------------------


def _self_signed(subject: x509.Name, *, ca: bool) -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP384R1())
    start = now() - dt.timedelta(minutes=5)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(hours=3))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return CertifiedKey(certificate, key)


def _forged_document(signer: CertifiedKey, cabundle: tuple[bytes, ...]) -> bytes:
    return AttestationDocument(
        module_id="i-0e1a2b3c4d5e6f708-enc0123456789abcdef",
        timestamp_ms=int(now().timestamp() * 1000),
        pcrs=enclave_pcrs(MEASUREMENTS, PCR3, instance_id="i-0e1a2b3c4d5e6f708", debug_mode=False),
        certificate=signer.der,
        cabundle=cabundle,
        public_key=b"attacker's key",
    ).sign(signer.key)


def _aws_root() -> x509.Certificate:
    return x509.load_pem_x509_certificate((FIXTURES / "aws-nitro-enclaves-root-g1.pem").read_bytes())


@pytest.mark.parametrize("trusted", ["emulator", "aws"])
@pytest.mark.parametrize("leaf_name", ["own", "root's"])
def test_a_self_signed_leaf_with_only_the_root_in_the_bundle_is_refused(
    pki: TestPki, trusted: str, leaf_name: str
) -> None:
    root = pki.root.certificate if trusted == "emulator" else _aws_root()
    subject = (
        root.subject
        if leaf_name == "root's"
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "i-0e1a2b3c4d5e6f708-enc0123456789abcdef")])
    )
    leaf = _self_signed(subject, ca=False)
    # Well formed, fresh and correctly signed by its own certificate: only the chain check can refuse it.
    message = _forged_document(leaf, (root.public_bytes(Encoding.DER),))
    for verify in (verify_document, DocumentVerifier().verify):
        with pytest.raises(AttestationError) as refused:
            verify(message, root, now=now(), max_age=MAX_AGE)
        assert refused.value.reason == "chain"


def test_a_forged_root_in_the_bundle_is_not_trusted(pki: TestPki) -> None:
    # The bundle's only certificate claims the root's name and did sign the leaf.
    forged_root = _self_signed(pki.root.certificate.subject, ca=True)
    leaf = issue("i-0e1a2b3c4d5e6f708-enc0123456789abcdef.us-east-1.aws", issuer=forged_root, ca=False)
    for cabundle in ((forged_root.der,), (pki.root.der,), (forged_root.der, forged_root.der)):
        message = _forged_document(leaf, cabundle)
        with pytest.raises(AttestationError) as refused:
            verify_document(message, pki.root.certificate, now=now(), max_age=MAX_AGE)
        assert refused.value.reason == "chain"
