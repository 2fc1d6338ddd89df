"""PKCS#8 private keys to HPKE recipients (upstream spec 2.4)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from vault.common.suites import P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM
from vault.enclave.keys import KeyFormatError, load_private_key, private_scalar, recipient_from_pkcs8


def _pkcs8(key) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def test_upstream_pkcs8_gives_the_published_scalar(upstream, upstream_der):
    scalar = private_scalar(upstream_der, P384_SHA384_AES256GCM)
    assert scalar.hex() == upstream["private_scalar_hex"]
    assert len(scalar) == 48


def test_upstream_recipient_opens_the_vector(upstream, upstream_der):
    recipient = recipient_from_pkcs8(upstream_der, P384_SHA384_AES256GCM)
    enc_hex, ct_hex = upstream["hex_field"]["value"].split("#")
    opened = recipient.open(
        bytes.fromhex(enc_hex), bytes.fromhex(ct_hex), upstream["vault_id"].encode(), b"first_name"
    )
    assert opened == b"Bob"


@pytest.mark.parametrize(
    "suite", [P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM], ids=str
)
def test_scalar_is_fixed_length(suite):
    # Keys with leading zero bytes must still give Nsk bytes: pick a small scalar.
    key = ec.derive_private_key(0x1234, suite.kem_params.curve())
    scalar = private_scalar(_pkcs8(key), suite)
    assert len(scalar) == suite.n_sk
    assert int.from_bytes(scalar, "big") == 0x1234


def test_curve_must_match_suite():
    der = _pkcs8(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(KeyFormatError) as info:
        load_private_key(der, P384_SHA384_AES256GCM)
    assert str(info.value).startswith("unable to decode PKCS#8 private key: key is on secp256r1")


def test_non_ec_key_is_refused():
    der = _pkcs8(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(KeyFormatError, match="unable to decode PKCS#8 private key"):
        load_private_key(der, P384_SHA384_AES256GCM)


def test_sec1_format_is_refused():
    key = ec.generate_private_key(ec.SECP384R1())
    sec1 = key.private_bytes(Encoding.DER, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    with pytest.raises(KeyFormatError, match="not a PKCS#8 PrivateKeyInfo"):
        load_private_key(sec1, P384_SHA384_AES256GCM)


@pytest.mark.parametrize(
    "der", [b"", b"\x30", b"\x04\x00", b"\x30\x03\x02\x01\x00", b"\x30\x81\x05\x02\x01\x00\x30\x00"]
)
def test_garbage_is_refused_with_the_upstream_prefix(der):
    with pytest.raises(KeyFormatError) as info:
        recipient_from_pkcs8(der, P384_SHA384_AES256GCM)
    assert str(info.value).startswith("unable to decode PKCS#8 private key: ")


def test_error_never_contains_key_bytes(upstream_der):
    truncated = upstream_der[:-20]
    with pytest.raises(KeyFormatError) as info:
        recipient_from_pkcs8(truncated, P384_SHA384_AES256GCM)
    assert upstream_der[-40:-20].hex() not in str(info.value)
