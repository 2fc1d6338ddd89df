"""HPKE cipher suites the vault understands, and their 10-byte RFC 9180 suite ids."""

from __future__ import annotations

import base64
import binascii
import enum
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec


class SuiteError(ValueError):
    """Unknown or malformed suite identifier."""


class Kem(enum.IntEnum):
    DHKEM_P256_HKDF_SHA256 = 0x0010
    DHKEM_P384_HKDF_SHA384 = 0x0011
    DHKEM_P521_HKDF_SHA512 = 0x0012


class Kdf(enum.IntEnum):
    HKDF_SHA256 = 0x0001
    HKDF_SHA384 = 0x0002
    HKDF_SHA512 = 0x0003


class Aead(enum.IntEnum):
    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003


@dataclass(frozen=True)
class KemParams:
    curve: type[ec.EllipticCurve]
    hash_name: str  # hashlib name of the KEM's HKDF
    n_secret: int
    n_enc: int  # uncompressed SEC1 point length
    n_sk: int  # private scalar length


KEM_PARAMS: dict[Kem, KemParams] = {
    Kem.DHKEM_P256_HKDF_SHA256: KemParams(ec.SECP256R1, "sha256", 32, 65, 32),
    Kem.DHKEM_P384_HKDF_SHA384: KemParams(ec.SECP384R1, "sha384", 48, 97, 48),
    Kem.DHKEM_P521_HKDF_SHA512: KemParams(ec.SECP521R1, "sha512", 64, 133, 66),
}
KDF_HASH: dict[Kdf, str] = {Kdf.HKDF_SHA256: "sha256", Kdf.HKDF_SHA384: "sha384", Kdf.HKDF_SHA512: "sha512"}
AEAD_KEY_LEN: dict[Aead, int] = {Aead.AES_128_GCM: 16, Aead.AES_256_GCM: 32, Aead.CHACHA20_POLY1305: 32}


@dataclass(frozen=True)
class Suite:
    kem: Kem
    kdf: Kdf
    aead: Aead
    name: str = ""

    @property
    def suite_id(self) -> bytes:
        """RFC 9180 ``suite_id``: ``b"HPKE" || kem || kdf || aead`` (10 bytes)."""
        return b"HPKE" + struct.pack(">HHH", self.kem, self.kdf, self.aead)

    @property
    def suite_id_b64(self) -> str:
        return base64.b64encode(self.suite_id).decode("ascii")

    @property
    def kem_params(self) -> KemParams:
        return KEM_PARAMS[self.kem]

    @property
    def n_enc(self) -> int:
        return self.kem_params.n_enc

    @property
    def n_sk(self) -> int:
        return self.kem_params.n_sk

    def __str__(self) -> str:
        return self.name or f"HPKE(kem={self.kem:#06x}, kdf={self.kdf:#06x}, aead={self.aead:#06x})"


P256_SHA256_AES256GCM = Suite(
    Kem.DHKEM_P256_HKDF_SHA256, Kdf.HKDF_SHA256, Aead.AES_256_GCM, "P256_SHA256_AES256GCM"
)
P384_SHA384_AES256GCM = Suite(
    Kem.DHKEM_P384_HKDF_SHA384, Kdf.HKDF_SHA384, Aead.AES_256_GCM, "P384_SHA384_AES256GCM"
)
P521_SHA512_AES256GCM = Suite(
    Kem.DHKEM_P521_HKDF_SHA512, Kdf.HKDF_SHA512, Aead.AES_256_GCM, "P521_SHA512_AES256GCM"
)
#: Suites the vault accepts for stored data; the API always writes P-384.
VAULT_SUITES: tuple[Suite, ...] = (P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM)
DEFAULT_SUITE = P384_SHA384_AES256GCM
_BY_ID = {s.suite_id: s for s in VAULT_SUITES}


def suite_from_id(suite_id: bytes) -> Suite:
    try:
        return _BY_ID[bytes(suite_id)]
    except KeyError:
        raise SuiteError("unknown suite identifier") from None


def suite_from_b64(value: str) -> Suite:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SuiteError(f"unable to base64 decode input: {exc}") from exc
    return suite_from_id(raw)
