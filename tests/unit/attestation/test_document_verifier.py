"""DocumentVerifier: verify_document's verdicts, with what does not depend on time verified once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import emulator.nitro.attestation as attestation
from emulator.nitro.attestation import AttestationError, DocumentVerifier, verify_document
from emulator.nitro.nsm import NsmService
from emulator.nitro.pki import TestPki
from vault.enclave.nsm import SocketNsm

from .conftest import MEASUREMENTS, PCR3

MAX_AGE = dt.timedelta(minutes=5)


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
