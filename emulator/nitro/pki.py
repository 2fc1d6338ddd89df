"""The emulator's test PKI, shaped like the AWS Nitro attestation PKI.

AWS signs attestation documents with a short-lived per-enclave certificate under a
chain that ends in the Nitro Enclaves root (``CN=aws.nitro-enclaves``), all ECDSA
P-384 with SHA-384. The emulator has its own root and one intermediate, persisted per
state directory so that documents stay verifiable across restarts, and issues a leaf
for each enclave it launches. It also holds the image signing certificate whose hash
is PCR8.

Nothing here is secret in the production sense -- these keys exist only to make the
emulated attestation verifiable -- but private keys are still written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

ROOT_LIFETIME = dt.timedelta(days=30 * 365)
INTERMEDIATE_LIFETIME = dt.timedelta(days=5 * 365)
SIGNING_LIFETIME = dt.timedelta(days=5 * 365)
#: AWS issues enclave certificates valid for a few hours.
LEAF_LIFETIME = dt.timedelta(hours=3)
#: Certificates start a little in the past so a verifier's clock skew does not matter.
BACKDATE = dt.timedelta(minutes=5)
_FILES = {
    "root": ("root.pem", "root.key"),
    "intermediate": ("intermediate.pem", "intermediate.key"),
    "image_signing": ("image-signing.pem", "image-signing.key"),
}


class PkiError(ValueError):
    """A certificate chain does not verify, or PKI files are unusable."""


@dataclass(frozen=True)
class CertifiedKey:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nitro Vault Emulator"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issue(
    common_name: str,
    *,
    issuer: CertifiedKey | None,
    ca: bool,
    path_length: int | None = None,
    not_before: dt.datetime | None = None,
    lifetime: dt.timedelta = LEAF_LIFETIME,
    not_after: dt.datetime | None = None,
) -> CertifiedKey:
    """A P-384 key and its ECDSA-SHA384 certificate; self-signed when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP384R1())
    start = not_before or (_now() - BACKDATE)
    subject = _name(common_name)
    signer_key = issuer.key if issuer else key
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = (
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        if issuer
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or (start + lifetime))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )
    return CertifiedKey(builder.sign(signer_key, hashes.SHA384()), key)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _save(item: CertifiedKey, directory: Path, names: tuple[str, str]) -> None:
    cert_name, key_name = names
    (directory / cert_name).write_bytes(item.certificate.public_bytes(Encoding.PEM))
    _write_private(
        directory / key_name, item.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )


def _load(directory: Path, names: tuple[str, str]) -> CertifiedKey:
    cert_name, key_name = names
    try:
        certificate = x509.load_pem_x509_certificate((directory / cert_name).read_bytes())
        key = load_pem_private_key((directory / key_name).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot load {cert_name} from {directory}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise PkiError(f"{key_name} is not a P-384 key")
    return CertifiedKey(certificate, key)


@dataclass(frozen=True)
class TestPki:
    """Root -> intermediate for attestation, plus the image signing certificate (PCR8)."""

    __test__ = False  # not a pytest test class

    root: CertifiedKey
    intermediate: CertifiedKey
    image_signing: CertifiedKey

    @classmethod
    def create(cls, name: str = "nitro-vault-emulator") -> TestPki:
        """A new PKI held in memory."""
        root = issue(f"{name}.nitro-enclaves", issuer=None, ca=True, lifetime=ROOT_LIFETIME)
        intermediate = issue(
            f"{name}.intermediate.nitro-enclaves",
            issuer=root,
            ca=True,
            path_length=0,
            lifetime=INTERMEDIATE_LIFETIME,
        )
        signing = issue(f"{name} enclave image signing", issuer=None, ca=False, lifetime=SIGNING_LIFETIME)
        return cls(root, intermediate, signing)

    @classmethod
    def load_or_create(cls, directory: Path) -> TestPki:
        """The PKI persisted in ``directory`` (PEM files), created there on first use."""
        directory = Path(directory)
        if all((directory / cert).exists() for cert, _ in _FILES.values()):
            return cls(**{role: _load(directory, names) for role, names in _FILES.items()})
        pki = cls.create()
        pki.save(directory)
        return pki

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for role, names in _FILES.items():
            _save(getattr(self, role), directory, names)

    def issue_leaf(
        self,
        common_name: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        not_after: dt.datetime | None = None,
    ) -> CertifiedKey:
        """An enclave's signing certificate (what signs its attestation documents)."""
        return issue(
            common_name,
            issuer=self.intermediate,
            ca=False,
            not_before=not_before,
            lifetime=lifetime,
            not_after=not_after,
        )

    @property
    def cabundle(self) -> list[bytes]:
        """DER certificates in attestation-document order: root first."""
        return [self.root.der, self.intermediate.der]


def _require_es384(certificate: x509.Certificate, role: str) -> None:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise PkiError(f"the {role} certificate key is not P-384")
    if not isinstance(certificate.signature_hash_algorithm, hashes.SHA384):
        raise PkiError(f"the {role} certificate is not signed with SHA-384")


def verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trusted_root: x509.Certificate,
    at: dt.datetime,
) -> None:
    """Check that ``leaf`` chains to ``trusted_root`` through ``intermediates`` at time ``at``.

    Path building, signatures, validity periods, basic constraints, key usage and path
    length are checked by ``cryptography``'s X.509 verifier with web-PKI rules for the
    CAs; the leaf only needs to be a certificate (documents are not TLS). On top, every
    certificate must be P-384 and signed with SHA-384, as the Nitro PKI is.
    """
    for index, certificate in enumerate([leaf, *intermediates]):
        _require_es384(certificate, "leaf" if index == 0 else "intermediate")
    _require_es384(trusted_root, "root")
    verifier = (
        PolicyBuilder()
        .store(Store([trusted_root]))
        .time(at)
        .max_chain_depth(4)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise PkiError(f"certificate chain does not verify: {exc}") from None
