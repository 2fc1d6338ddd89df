"""The emulator's test PKI, shaped certificate by certificate like the AWS Nitro attestation PKI.

AWS signs an attestation document with a short-lived certificate for the enclave, under
a chain root -> regional -> zonal -> instance that the document carries in ``cabundle``
(root first), all ECDSA P-384 with SHA-384. The emulator builds the same chain with its
own root, so that a verifier written against real documents (one that insists on four
bundle certificates, reads the region from a name, or checks key usages) accepts the
emulator's documents, while only the emulator's root makes them trusted.

Each certificate as AWS issues it (read from real documents, see the test fixtures)
and as :data:`CHAIN` reproduces it:

==========  ======================  ======================  ==============  ===================  =====  ===
role        subject, in order       CN                      basic constr.   key usage            SKI    AKI
==========  ======================  ======================  ==============  ===================  =====  ===
root        C O OU CN               <partition>             critical CA     critical dS kCS CRL  yes    no
            (C=US)                  .nitro-enclaves         no path length
regional    C O OU CN               <16 hex>.<region>       critical CA     critical dS kCS CRL  yes    yes
                                    .aws.nitro-enclaves     pathlen 2
zonal       CN OU O C ST L          <16 hex>.zonal.<region> critical CA     critical dS kCS CRL  yes    yes
            (ST=WA, L=Seattle)      .aws.nitro-enclaves     pathlen 1
instance    C ST L O OU CN          <instance id>.<region>  critical CA     critical kCS         yes    yes
            (ST=Washington)         .aws.nitro-enclaves     pathlen 0
leaf        C ST L O OU CN          <module id>.<region>    critical        dS nonRepudiation    no     no
                                    .aws                    not a CA        (not critical)
==========  ======================  ======================  ==============  ===================  =====  ===

(dS digitalSignature, kCS keyCertSign, CRL cRLSign.) Regional and zonal certificates also
carry a non-critical CRL distribution point (one URI). Serial numbers are 16 bytes long,
the instance certificate's 20; the leaf's is the enclave id (8 bytes), 4 zero bytes and
the second it was issued (4 bytes). Extensions appear in AWS's order.

What differs on purpose: the organisation names (``O``/``OU``) and the root's
partition name the emulator, not Amazon; CRL URIs are under ``.invalid``; the regional
and zonal certificates live as long as the state directory (AWS rotates them every few
days) so that the persisted PKI keeps working; certificates start a few minutes in the
past so clock skew between the NSM and a verifier does not matter. Instance
certificates are issued on first use per instance id and live a day, as AWS's do; leaves
live three hours.

The PKI also holds the image signing certificate whose hash is PCR8 (not part of the
chain). Nothing here is secret in the production sense -- these keys exist only to make
the emulated attestation verifiable -- but private keys are still written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import threading
import uuid
from collections.abc import Iterable, Sequence
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
#: AWS's regional and zonal certificates live 20 and about 6 days; the emulator's as long as its state.
INTERMEDIATE_LIFETIME = dt.timedelta(days=5 * 365)
#: AWS issues instance certificates for a day.
INSTANCE_LIFETIME = dt.timedelta(days=1)
SIGNING_LIFETIME = dt.timedelta(days=5 * 365)
#: AWS issues enclave certificates valid for three hours.
LEAF_LIFETIME = dt.timedelta(hours=3)
#: Certificates start a little in the past so a verifier's clock skew does not matter.
BACKDATE = dt.timedelta(minutes=5)
#: A persisted regional or zonal certificate this close to its end is replaced on load.
RENEWAL_MARGIN = dt.timedelta(days=1)
DEFAULT_NAME = "nitro-vault-emulator"
DEFAULT_REGION = "us-east-1"
#: The EC2 instance the emulated enclaves run on, unless a caller names another.
DEFAULT_INSTANCE_ID = "i-0e1a2b3c4d5e6f708"
ORGANIZATION = "Nitro Vault Emulator"
ORGANIZATIONAL_UNIT = "Test PKI"
CRL_BASE = "http://crl.nitro-vault-emulator.invalid/crl"

_CHAIN_FILES = {
    "root": ("root.pem", "root.key"),
    "regional": ("regional.pem", "regional.key"),
    "zonal": ("zonal.pem", "zonal.key"),
}
_SIGNING_FILES = ("image-signing.pem", "image-signing.key")
#: The layout before the chain had AWS's depth: root -> one intermediate.
_LEGACY_FILES = ("intermediate.pem", "intermediate.key")
_REGIONAL_CN = re.compile(r"^[0-9a-f]{16}\.(?P<region>[a-z0-9-]+)\.aws\.nitro-enclaves$")
_ENCLAVE_HEX = re.compile(r"-enc(?P<hex>[0-9a-fA-F]{16})$")

_C, _ST, _L, _O, _OU, _CN = (
    NameOID.COUNTRY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COMMON_NAME,
)


class PkiError(ValueError):
    """A certificate chain does not verify, or PKI files are unusable."""


@dataclass(frozen=True)
class CertificateProfile:
    """How AWS shapes one certificate of the attestation chain (a row of the module's table)."""

    role: str
    #: Subject attribute types in order; the values come from :data:`_VALUES` and the CN.
    subject: tuple[x509.ObjectIdentifier, ...]
    ca: bool
    path_length: int | None
    #: Key usage bits that are set, and whether the extension is critical.
    key_usage: frozenset[str]
    key_usage_critical: bool
    #: Extension types in the order they appear in AWS's certificates.
    extensions: tuple[x509.ObjectIdentifier, ...]
    #: Length of the serial number in bytes (its magnitude).
    serial_bytes: int


_ExtensionOID = x509.oid.ExtensionOID
_CA_USAGE = frozenset({"digital_signature", "key_cert_sign", "crl_sign"})

#: The chain as AWS issues it, root first, the enclave's certificate last.
CHAIN: tuple[CertificateProfile, ...] = (
    CertificateProfile(
        role="root",
        subject=(_C, _O, _OU, _CN),
        ca=True,
        path_length=None,
        key_usage=_CA_USAGE,
        key_usage_critical=True,
        extensions=(
            _ExtensionOID.BASIC_CONSTRAINTS,
            _ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            _ExtensionOID.KEY_USAGE,
        ),
        serial_bytes=16,
    ),
    CertificateProfile(
        role="regional",
        subject=(_C, _O, _OU, _CN),
        ca=True,
        path_length=2,
        key_usage=_CA_USAGE,
        key_usage_critical=True,
        extensions=(
            _ExtensionOID.BASIC_CONSTRAINTS,
            _ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
            _ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            _ExtensionOID.KEY_USAGE,
            _ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ),
        serial_bytes=16,
    ),
    CertificateProfile(
        role="zonal",
        subject=(_CN, _OU, _O, _C, _ST, _L),
        ca=True,
        path_length=1,
        key_usage=_CA_USAGE,
        key_usage_critical=True,
        extensions=(
            _ExtensionOID.BASIC_CONSTRAINTS,
            _ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
            _ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            _ExtensionOID.KEY_USAGE,
            _ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ),
        serial_bytes=16,
    ),
    CertificateProfile(
        role="instance",
        subject=(_C, _ST, _L, _O, _OU, _CN),
        ca=True,
        path_length=0,
        key_usage=frozenset({"key_cert_sign"}),
        key_usage_critical=True,
        extensions=(
            _ExtensionOID.BASIC_CONSTRAINTS,
            _ExtensionOID.KEY_USAGE,
            _ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            _ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ),
        serial_bytes=20,
    ),
    CertificateProfile(
        role="leaf",
        subject=(_C, _ST, _L, _O, _OU, _CN),
        ca=False,
        path_length=None,
        key_usage=frozenset({"digital_signature", "content_commitment"}),
        key_usage_critical=False,
        extensions=(_ExtensionOID.BASIC_CONSTRAINTS, _ExtensionOID.KEY_USAGE),
        serial_bytes=16,
    ),
)
PROFILES = {profile.role: profile for profile in CHAIN}

#: Attribute values other than the CN, per role (AWS writes ST as "WA" in zonal names only).
_VALUES = {
    "root": {_C: "US", _O: ORGANIZATION, _OU: ORGANIZATIONAL_UNIT},
    "regional": {_C: "US", _O: ORGANIZATION, _OU: ORGANIZATIONAL_UNIT},
    "zonal": {_C: "US", _O: ORGANIZATION, _OU: ORGANIZATIONAL_UNIT, _ST: "WA", _L: "Seattle"},
    "instance": {_C: "US", _O: ORGANIZATION, _OU: ORGANIZATIONAL_UNIT, _ST: "Washington", _L: "Seattle"},
    "leaf": {_C: "US", _O: ORGANIZATION, _OU: ORGANIZATIONAL_UNIT, _ST: "Washington", _L: "Seattle"},
}
_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


@dataclass(frozen=True)
class CertifiedKey:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class EnclaveSigner:
    """An enclave's certificate and key, with the bundle that chains it (root first)."""

    leaf: CertifiedKey
    cabundle: tuple[bytes, ...] = field(repr=False)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(role: str, common_name: str) -> x509.Name:
    values = {**_VALUES[role], _CN: common_name}
    return x509.Name([x509.NameAttribute(oid, values[oid]) for oid in PROFILES[role].subject])


def _key_usage(bits: frozenset[str]) -> x509.KeyUsage:
    flags = {bit: bit in bits for bit in _KEY_USAGE_BITS}
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


def random_serial(length: int) -> int:
    """A positive serial number of exactly ``length`` bytes, its first byte in 0x01..0x7f.

    The first byte stays below 0x80 so that DER needs no sign byte: a 20-byte serial
    is then within RFC 5280's 20 octets (AWS's sometimes are not, and ``cryptography``
    refuses to write those).
    """
    return (secrets.randbelow(0x7F) + 1) << (8 * (length - 1)) | secrets.randbits(8 * (length - 1))


def leaf_serial(module_id: str, issued: dt.datetime) -> int:
    """AWS's leaf serial: the enclave id's 8 bytes, 4 zero bytes, the issuing second (16 bytes).

    Real enclave ids begin with their launch time in milliseconds, so their first byte is
    small and never zero; an id that would make the serial shorter or DER-signed longer
    has its first byte brought into 0x01..0x7f.
    """
    match = _ENCLAVE_HEX.search(module_id)
    enclave = bytes.fromhex(match["hex"]) if match else hashlib.sha256(module_id.encode()).digest()[:8]
    first = enclave[0] & 0x7F or 1
    seconds = int(issued.timestamp()) & 0xFFFFFFFF
    return int.from_bytes(bytes([first]) + enclave[1:] + bytes(4) + seconds.to_bytes(4, "big"), "big")


def _crl_point() -> x509.CRLDistributionPoints:
    uri = x509.UniformResourceIdentifier(f"{CRL_BASE}/{uuid.uuid4()}.crl")
    return x509.CRLDistributionPoints(
        [x509.DistributionPoint(full_name=[uri], relative_name=None, reasons=None, crl_issuer=None)]
    )


def issue_profiled(
    role: str,
    common_name: str,
    *,
    issuer: CertifiedKey | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    serial: int | None = None,
) -> CertifiedKey:
    """A P-384 key and its certificate shaped as ``PROFILES[role]``; self-signed when ``issuer`` is None."""
    profile = PROFILES[role]
    key = ec.generate_private_key(ec.SECP384R1())
    subject = _name(role, common_name)
    signer = issuer.key if issuer else key
    values: dict[x509.ObjectIdentifier, tuple[x509.ExtensionType, bool]] = {
        _ExtensionOID.BASIC_CONSTRAINTS: (
            x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length),
            True,
        ),
        _ExtensionOID.KEY_USAGE: (_key_usage(profile.key_usage), profile.key_usage_critical),
        _ExtensionOID.SUBJECT_KEY_IDENTIFIER: (
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            False,
        ),
        _ExtensionOID.CRL_DISTRIBUTION_POINTS: (_crl_point(), False),
    }
    if issuer is not None:
        values[_ExtensionOID.AUTHORITY_KEY_IDENTIFIER] = (
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            False,
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else random_serial(profile.serial_bytes))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for oid in profile.extensions:
        extension, critical = values[oid]
        builder = builder.add_extension(extension, critical=critical)
    return CertifiedKey(builder.sign(signer, hashes.SHA384()), key)


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
    """A P-384 certificate outside the Nitro profiles (the image signing certificate, test oddities)."""
    key = ec.generate_private_key(ec.SECP384R1())
    start = not_before or (_now() - BACKDATE)
    subject = x509.Name(
        [
            x509.NameAttribute(_C, "US"),
            x509.NameAttribute(_O, ORGANIZATION),
            x509.NameAttribute(_OU, ORGANIZATIONAL_UNIT),
            x509.NameAttribute(_CN, common_name),
        ]
    )
    usage = frozenset({"key_cert_sign", "crl_sign"} if ca else {"digital_signature"})
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or (start + lifetime))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(_key_usage(usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return CertifiedKey(builder.sign(issuer.key if issuer else key, hashes.SHA384()), key)


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


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(_CN)
    return str(names[0].value) if names else ""


def _region_of(regional: x509.Certificate) -> str | None:
    match = _REGIONAL_CN.match(_common_name(regional))
    return match["region"] if match else None


def _intermediates(root: CertifiedKey, region: str, at: dt.datetime) -> tuple[CertifiedKey, CertifiedKey]:
    start, end = at - BACKDATE, at - BACKDATE + INTERMEDIATE_LIFETIME
    regional = issue_profiled(
        "regional",
        f"{secrets.token_hex(8)}.{region}.aws.nitro-enclaves",
        issuer=root,
        not_before=start,
        not_after=end,
    )
    zonal = issue_profiled(
        "zonal",
        f"{secrets.token_hex(8)}.zonal.{region}.aws.nitro-enclaves",
        issuer=regional,
        not_before=start,
        not_after=end,
    )
    return regional, zonal


def _new_root(name: str, at: dt.datetime) -> CertifiedKey:
    return issue_profiled(
        "root",
        f"{name}.nitro-enclaves",
        issuer=None,
        not_before=at - BACKDATE,
        not_after=at - BACKDATE + ROOT_LIFETIME,
    )


def _current(items: Iterable[CertifiedKey], at: dt.datetime) -> bool:
    """Whether every certificate is valid at ``at`` and stays so beyond the renewal margin."""
    return all(
        item.certificate.not_valid_before_utc <= at
        and item.certificate.not_valid_after_utc - at > RENEWAL_MARGIN
        for item in items
    )


def _new_signing(name: str) -> CertifiedKey:
    return issue(f"{name} enclave image signing", issuer=None, ca=False, lifetime=SIGNING_LIFETIME)


@dataclass(frozen=True)
class TestPki:
    """Root, regional, zonal (persisted), instance CAs (per instance id); and PCR8's certificate."""

    __test__ = False  # not a pytest test class

    root: CertifiedKey
    regional: CertifiedKey
    zonal: CertifiedKey
    image_signing: CertifiedKey
    region: str = DEFAULT_REGION
    _instances: dict[str, CertifiedKey] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @classmethod
    def create(cls, name: str = DEFAULT_NAME, *, region: str = DEFAULT_REGION) -> TestPki:
        """A new PKI held in memory."""
        now = _now()
        root = _new_root(name, now)
        regional, zonal = _intermediates(root, region, now)
        return cls(root, regional, zonal, _new_signing(name), region)

    @classmethod
    def load_or_create(cls, directory: Path, *, region: str = DEFAULT_REGION) -> TestPki:
        """The PKI persisted in ``directory`` (PEM files), created there on first use.

        The image signing certificate is kept whenever it exists (PCR8 depends on it). A
        directory from before the chain had AWS's depth (root and one intermediate) gets a
        new chain, root included, and loses its intermediate files; regional and zonal
        certificates near their end, or for another region, are issued again under the root.
        """
        directory = Path(directory)
        now = _now()
        signing_exists = (directory / _SIGNING_FILES[0]).exists()
        signing = _load(directory, _SIGNING_FILES) if signing_exists else _new_signing(DEFAULT_NAME)
        if all((directory / cert).exists() for cert, _ in _CHAIN_FILES.values()):
            chain = {role: _load(directory, names) for role, names in _CHAIN_FILES.items()}
            pki = cls(chain["root"], chain["regional"], chain["zonal"], signing, region)
            if _current(chain.values(), now) and _region_of(pki.regional.certificate) == region:
                if not signing_exists:
                    pki.save(directory)
                return pki
            root = chain["root"] if _current([chain["root"]], now) else _new_root(DEFAULT_NAME, now)
        else:
            root = _new_root(DEFAULT_NAME, now)
        regional, zonal = _intermediates(root, region, now)
        pki = cls(root, regional, zonal, signing, region)
        pki.save(directory)
        for legacy in _LEGACY_FILES:
            (directory / legacy).unlink(missing_ok=True)
        return pki

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for role, names in _CHAIN_FILES.items():
            _save(getattr(self, role), directory, names)
        _save(self.image_signing, directory, _SIGNING_FILES)

    def instance_ca(
        self,
        instance_id: str = DEFAULT_INSTANCE_ID,
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> CertifiedKey:
        """The instance's CA certificate, valid from ``not_before`` to ``not_after`` at least.

        Issued on first use and again when the current one does not cover that period
        (by default: from now on); AWS's live a day.
        """
        start = not_before or (_now() - BACKDATE)
        end = max(not_after or start, start + INSTANCE_LIFETIME)
        with self._lock:
            current = self._instances.get(instance_id)
            if current is not None and (
                current.certificate.not_valid_before_utc <= start
                and current.certificate.not_valid_after_utc >= (not_after or start)
            ):
                return current
            issued = issue_profiled(
                "instance",
                f"{instance_id}.{self.region}.aws.nitro-enclaves",
                issuer=self.zonal,
                not_before=start,
                not_after=end,
            )
            self._instances[instance_id] = issued
            return issued

    def chain(self, instance_ca: CertifiedKey) -> tuple[bytes, ...]:
        """The ``cabundle`` for certificates that ``instance_ca`` signs: root first."""
        return (self.root.der, self.regional.der, self.zonal.der, instance_ca.der)

    def issue_enclave_signer(
        self,
        module_id: str,
        *,
        instance_id: str = DEFAULT_INSTANCE_ID,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        not_after: dt.datetime | None = None,
    ) -> EnclaveSigner:
        """An enclave's certificate (CN ``<module id>.<region>.aws``) and the bundle that chains it."""
        start = not_before or (_now() - BACKDATE)
        end = not_after or (start + lifetime)
        issuer = self.instance_ca(instance_id, not_before=start, not_after=end)
        leaf = issue_profiled(
            "leaf",
            f"{module_id}.{self.region}.aws",
            issuer=issuer,
            not_before=start,
            not_after=end,
            serial=leaf_serial(module_id, start + BACKDATE),
        )
        return EnclaveSigner(leaf, self.chain(issuer))

    def issue_leaf(
        self,
        module_id: str,
        *,
        not_before: dt.datetime | None = None,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        not_after: dt.datetime | None = None,
    ) -> CertifiedKey:
        """An enclave certificate under the default instance; :attr:`cabundle` chains it."""
        return self.issue_enclave_signer(
            module_id, not_before=not_before, lifetime=lifetime, not_after=not_after
        ).leaf

    @property
    def cabundle(self) -> list[bytes]:
        """DER certificates in attestation-document order (root first) for :meth:`issue_leaf`'s leaves."""
        return list(self.chain(self.instance_ca()))

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """The bundle's certificates below the root, for :func:`verify_chain`."""
        return [x509.load_der_x509_certificate(der) for der in self.cabundle[1:]]


def _require_es384(certificate: x509.Certificate, role: str) -> None:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise PkiError(f"the {role} certificate key is not P-384")
    if not isinstance(certificate.signature_hash_algorithm, hashes.SHA384):
        raise PkiError(f"the {role} certificate is not signed with SHA-384")


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
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
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raise PkiError(f"certificate chain does not verify: {exc}") from None
