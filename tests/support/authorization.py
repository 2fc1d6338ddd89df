"""A local authorizer key for tests and benchmarks: the API's KMS signing key, without KMS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault.common.authorization import AuthorizationWire, Grant, SignedAuthorization, sign


@dataclass
class LocalSigner:
    """ECDSA with a private key held in the process (P-256 / SHA-256 unless told otherwise)."""

    curve: ec.EllipticCurve = field(default_factory=ec.SECP256R1)
    private_key: ec.EllipticCurvePrivateKey = field(init=False)

    def __post_init__(self) -> None:
        self.private_key = ec.generate_private_key(self.curve)

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def sign(self, message: bytes) -> bytes:
        algorithm: hashes.HashAlgorithm = (
            hashes.SHA384() if isinstance(self.curve, ec.SECP384R1) else hashes.SHA256()
        )
        return self.private_key.sign(message, ec.ECDSA(algorithm))


def authorize(
    signer: LocalSigner,
    *,
    vault_id: str,
    fields: list[str] | tuple[str, ...],
    expressions: Mapping[str, str] | None = None,
    request_id: str = "req-test-1",
    issued_at: int,
    lifetime_seconds: int = 30,
) -> SignedAuthorization:
    grant = Grant.for_request(
        vault_id=vault_id,
        fields=fields,
        expressions=expressions or {},
        request_id=request_id,
        issued_at=issued_at,
        lifetime_seconds=lifetime_seconds,
    )
    return sign(grant, signer)


def wire(signed: SignedAuthorization) -> AuthorizationWire:
    return signed.to_wire()
