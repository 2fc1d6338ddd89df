"""HPKE base mode against RFC 9180's published vectors and the upstream vault's vector."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_public_key,
)
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from vault.common import hpke
from vault.common.suites import (
    P256_SHA256_AES256GCM,
    P384_SHA384_AES256GCM,
    P521_SHA512_AES256GCM,
    Aead,
    Kdf,
    Kem,
    Suite,
)
from vault.enclave.keys import recipient_from_pkcs8

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
RFC = json.loads((VECTORS / "rfc9180_base.json").read_text())["vectors"]
UPSTREAM = json.loads((VECTORS / "upstream_vault.json").read_text())
h = bytes.fromhex


def _suite(vector) -> Suite:
    return Suite(Kem(vector["kem_id"]), Kdf(vector["kdf_id"]), Aead(vector["aead_id"]))


def _ids(vector) -> str:
    return vector["source"].rsplit(" ", 1)[-1]


def test_vector_file_covers_p256_and_p521_base_mode():
    assert {(v["mode"], v["kem_id"]) for v in RFC} == {(0, 0x10), (0, 0x12)}


@pytest.mark.parametrize("vector", RFC, ids=_ids)
def test_rfc_recipient_key(vector):
    recipient = hpke.Recipient.from_scalar(_suite(vector), h(vector["skRm"]))
    assert recipient.public_point == h(vector["pkRm"])


@pytest.mark.parametrize("vector", RFC, ids=_ids)
def test_rfc_open(vector):
    suite = _suite(vector)
    recipient = hpke.Recipient.from_scalar(suite, h(vector["skRm"]))
    for encryption in vector["encryptions"]:
        assert encryption["sequence_number"] == 0  # single-shot open only
        opened = recipient.open(
            h(vector["enc"]), h(encryption["ciphertext"]), h(vector["info"]), h(encryption["aad"])
        )
        assert opened == h(encryption["plaintext"])


@pytest.mark.parametrize("vector", RFC, ids=_ids)
def test_rfc_seal_with_fixed_ephemeral_key(vector):
    suite = _suite(vector)
    curve = suite.kem_params.curve()
    ephemeral = ec.derive_private_key(int(vector["skEm"], 16), curve)
    encryption = vector["encryptions"][0]
    enc, ct = hpke.seal(
        suite,
        h(vector["pkRm"]),
        h(vector["info"]),
        h(encryption["aad"]),
        h(encryption["plaintext"]),
        ephemeral_key=ephemeral,
    )
    assert enc == h(vector["enc"]) == h(vector["pkEm"])
    assert ct == h(encryption["ciphertext"])


@pytest.mark.parametrize("vector", RFC, ids=_ids)
def test_rfc_key_schedule_intermediates(vector):
    suite = _suite(vector)
    recipient = ec.derive_private_key(int(vector["skRm"], 16), suite.kem_params.curve())
    enc = h(vector["enc"])
    pk_e = ec.EllipticCurvePublicKey.from_encoded_point(suite.kem_params.curve(), enc)
    dh = recipient.exchange(ec.ECDH(), pk_e)
    shared = hpke._shared_secret(suite, dh, enc + h(vector["pkRm"]))
    assert shared == h(vector["shared_secret"])
    key, nonce = hpke._key_schedule(suite, shared, h(vector["info"]))
    assert (key, nonce) == (h(vector["key"]), h(vector["base_nonce"]))


# -- the upstream vault's vector (spec 2.5) ---------------------------------------------


def _upstream_recipient() -> hpke.Recipient:
    return hpke.Recipient.from_scalar(P384_SHA384_AES256GCM, h(UPSTREAM["private_scalar_hex"]))


def test_upstream_hex_vector_decrypts_to_bob():
    enc_hex, ct_hex = UPSTREAM["hex_field"]["value"].split("#")
    enc, ct = h(enc_hex), h(ct_hex)
    assert (len(enc), len(ct)) == (97, 19)
    plaintext = _upstream_recipient().open(
        enc, ct, UPSTREAM["vault_id"].encode(), UPSTREAM["hex_field"]["name"].encode()
    )
    assert plaintext == b"Bob"


def test_upstream_public_key_matches_scalar():
    spki = base64.b64decode(UPSTREAM["public_key_spki_b64"])
    point = hpke.load_public_key(P384_SHA384_AES256GCM, spki)
    assert hpke._point(point) == _upstream_recipient().public_point
    assert isinstance(load_der_public_key(spki), ec.EllipticCurvePublicKey)


def test_upstream_vector_fails_with_other_info_or_aad():
    enc_hex, ct_hex = UPSTREAM["hex_field"]["value"].split("#")
    recipient = _upstream_recipient()
    with pytest.raises(hpke.HpkeError, match="authentication failed"):
        recipient.open(h(enc_hex), h(ct_hex), b"v_other", b"first_name")
    with pytest.raises(hpke.HpkeError, match="authentication failed"):
        recipient.open(h(enc_hex), h(ct_hex), UPSTREAM["vault_id"].encode(), b"last_name")


# -- seal/open and refusals ----------------------------------------------------------


@pytest.mark.parametrize("suite", [P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM])
def test_seal_open_round_trip_with_spki_and_point(suite):
    key = ec.generate_private_key(suite.kem_params.curve())
    recipient = hpke.Recipient(suite, key)
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for public in (spki, recipient.public_point, key.public_key()):
        enc, ct = hpke.seal(suite, public, b"vault", b"field", "héllo".encode())
        assert len(enc) == suite.n_enc
        assert len(ct) == len("héllo".encode()) + 16
        assert recipient.open(enc, ct, b"vault", b"field") == "héllo".encode()


def test_one_shot_open_matches_recipient():
    suite = P256_SHA256_AES256GCM
    key = ec.generate_private_key(suite.kem_params.curve())
    enc, ct = hpke.seal(suite, key.public_key(), b"i", b"a", b"p")
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    assert hpke.open_(suite, scalar, enc, ct, b"i", b"a") == b"p"


def test_open_refuses_wrong_enc_length():
    with pytest.raises(hpke.HpkeError, match="encapsulated key must be 97 bytes, got 65"):
        _upstream_recipient().open(b"\x04" * 65, b"x" * 19, b"i", b"a")


def test_open_refuses_point_not_on_curve():
    with pytest.raises(hpke.HpkeError, match="invalid encapsulated key"):
        _upstream_recipient().open(b"\x04" + b"\x01" * 96, b"x" * 19, b"i", b"a")


def test_open_refuses_tampered_ciphertext():
    enc_hex, ct_hex = UPSTREAM["hex_field"]["value"].split("#")
    ct = bytearray(h(ct_hex))
    ct[0] ^= 1
    with pytest.raises(hpke.HpkeError, match="authentication failed"):
        _upstream_recipient().open(h(enc_hex), bytes(ct), UPSTREAM["vault_id"].encode(), b"first_name")


def test_scalar_length_and_curve_are_checked():
    with pytest.raises(hpke.HpkeError, match="must be 48 bytes"):
        hpke.Recipient.from_scalar(P384_SHA384_AES256GCM, b"\x01" * 32)
    with pytest.raises(hpke.HpkeError, match="invalid private key"):
        hpke.Recipient.from_scalar(P256_SHA256_AES256GCM, b"\x00" * 32)
    with pytest.raises(hpke.HpkeError, match="not on secp384r1"):
        hpke.Recipient(P384_SHA384_AES256GCM, ec.generate_private_key(ec.SECP256R1()))


def test_public_key_on_wrong_curve_is_refused():
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(hpke.HpkeError, match="not on secp384r1"):
        hpke.load_public_key(P384_SHA384_AES256GCM, spki)
    with pytest.raises(hpke.HpkeError, match="invalid public key"):
        hpke.load_public_key(P384_SHA384_AES256GCM, b"garbage")


def test_seal_refuses_a_key_object_on_the_wrong_curve():
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(hpke.HpkeError, match="not on secp384r1"):
        hpke.seal(P384_SHA384_AES256GCM, other, b"i", b"a", b"p")


# -- ChaCha20-Poly1305 through the enclave's key path, and public key forms ------------------

CHACHA = next(v for v in RFC if v["aead_id"] == Aead.CHACHA20_POLY1305)


def test_vector_file_covers_every_aead():
    assert {v["aead_id"] for v in RFC} == {int(aead) for aead in Aead}


def test_chacha_vector_opens_through_the_enclave_key_path():
    """RFC 9180 A.5.1 opened the way the enclave opens: PKCS#8 from KMS, then a Recipient."""
    suite = _suite(CHACHA)
    private = ec.derive_private_key(int(CHACHA["skRm"], 16), suite.kem_params.curve())
    pkcs8 = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    recipient = recipient_from_pkcs8(pkcs8, suite)
    encryption = CHACHA["encryptions"][0]
    enc, ct, info, aad = (
        h(CHACHA["enc"]),
        h(encryption["ciphertext"]),
        h(CHACHA["info"]),
        h(encryption["aad"]),
    )
    assert recipient.open(enc, ct, info, aad) == h(encryption["plaintext"])
    # The same key schedule under AES-256-GCM (same key length) does not open it: the AEAD is ChaCha.
    aes = Suite(suite.kem, suite.kdf, Aead.AES_256_GCM)
    with pytest.raises(hpke.HpkeError, match=r"^authentication failed$"):
        recipient_from_pkcs8(pkcs8, aes).open(enc, ct, info, aad)
    tampered = bytearray(ct)
    tampered[-1] ^= 1
    with pytest.raises(hpke.HpkeError, match=r"^authentication failed$"):
        recipient.open(enc, bytes(tampered), info, aad)


def test_chacha_seal_opens_in_an_independent_implementation():
    suite = _suite(CHACHA)
    private = ec.derive_private_key(int(CHACHA["skRm"], 16), suite.kem_params.curve())
    enc, ct = hpke.seal(suite, h(CHACHA["pkRm"]), b"vault", b"field", b"value")
    pyhpke_suite = CipherSuite.new(KEMId(suite.kem), KDFId(suite.kdf), AEADId(suite.aead))
    receiver = pyhpke_suite.create_recipient_context(
        enc, KEMKey.from_pyca_cryptography_key(private), info=b"vault"
    )
    assert receiver.open(ct, aad=b"field") == b"value"


@pytest.mark.parametrize("vector", RFC, ids=_ids)
def test_load_public_key_takes_the_rfc_point_and_its_spki(vector):
    suite = _suite(vector)
    point = h(vector["pkRm"])
    assert (point[0], len(point)) == (0x04, suite.n_enc)
    key = hpke.load_public_key(suite, point)
    assert hpke._point(key) == point
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert hpke._point(hpke.load_public_key(suite, spki)) == point


def test_load_public_key_refuses_a_point_of_another_length():
    # A P-384 point (0x04, 97 bytes) offered for P-256 is not read as a point, nor as DER.
    point = _upstream_recipient().public_point
    with pytest.raises(hpke.HpkeError, match=r"^invalid public key"):
        hpke.load_public_key(P256_SHA256_AES256GCM, point)
    with pytest.raises(hpke.HpkeError, match=r"^invalid public key"):
        hpke.load_public_key(P256_SHA256_AES256GCM, point[:65])
    with pytest.raises(hpke.HpkeError, match=r"^invalid public key"):
        hpke.load_public_key(P256_SHA256_AES256GCM, b"")


def test_load_public_key_reads_a_point_only_when_it_starts_with_0x04():
    # A DER key exactly as long as a P-256 point (65 bytes) is parsed as DER, not as a point:
    # an RSA key with a 280-bit modulus is refused for its type, not as a bad point.
    rsa_key = rsa.RSAPublicNumbers(65537, (1 << 279) | 1).public_key()
    spki = rsa_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert (spki[0], len(spki)) == (0x30, P256_SHA256_AES256GCM.n_enc)
    with pytest.raises(hpke.HpkeError, match=r"^public key is not on secp256r1$"):
        hpke.load_public_key(P256_SHA256_AES256GCM, spki)
    # A compressed-point prefix on an uncompressed-length point is not a point either.
    point = h(RFC[0]["pkRm"])
    with pytest.raises(hpke.HpkeError, match=r"^invalid public key"):
        hpke.load_public_key(P256_SHA256_AES256GCM, b"\x02" + point[1:])
