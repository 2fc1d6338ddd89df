"""The enclave's CMS opener against OpenSSL, the front's builder, and malformed input."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from emulator.aws.kms.cms import encode_oid, envelope, subject_key_identifier, tlv
from vault.enclave import ber
from vault.enclave.cms import CmsError, open_enveloped_data

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")
CONTENT = b"\x30\x81\xbf" + bytes(range(256)) * 3  # PKCS#8-like bytes, several AES blocks


@pytest.fixture(scope="module")
def recipient(rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The RSA key and a self-signed certificate for it, as PEM files for OpenSSL."""
    directory = tmp_path_factory.mktemp("recipient")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enclave")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(rsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(rsa_key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(Encoding.PEM))
    (directory / "key.pem").write_bytes(
        rsa_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    (directory / "content.bin").write_bytes(CONTENT)
    return directory


def openssl_encrypt(directory: Path, *options: str) -> bytes:
    out = directory / "out.der"
    subprocess.run(
        [
            str(OPENSSL),
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-in",
            str(directory / "content.bin"),
            "-out",
            str(out),
            "-recip",
            str(directory / "cert.pem"),
            *options,
        ],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()


OAEP_SHA256 = ("-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256")


@needs_openssl
@pytest.mark.parametrize("stream", [False, True], ids=["der", "ber-streamed"])
def test_openssl_enveloped_data_opens(recipient: Path, rsa_key: rsa.RSAPrivateKey, stream: bool) -> None:
    message = openssl_encrypt(recipient, *OAEP_SHA256, "-aes256", *(["-stream"] if stream else []))
    assert (message[1] == 0x80) is stream  # indefinite length on the outer SEQUENCE when streamed
    assert open_enveloped_data(message, rsa_key) == CONTENT


@needs_openssl
@pytest.mark.parametrize("ber_encoding", [True, False], ids=["ber", "der"])
def test_front_enveloped_data_opens_with_openssl(
    recipient: Path, rsa_key: rsa.RSAPrivateKey, ber_encoding: bool
) -> None:
    message_path = recipient / "front.der"
    message_path.write_bytes(envelope(CONTENT, rsa_key.public_key(), ber=ber_encoding))
    result = subprocess.run(
        [
            str(OPENSSL),
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(message_path),
            "-inkey",
            str(recipient / "key.pem"),
        ],
        check=True,
        capture_output=True,
    )
    assert result.stdout == CONTENT


@needs_openssl
@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        (("-aes256",), "not RSAES-OAEP"),  # PKCS#1 v1.5 key transport
        (("-keyopt", "rsa_padding_mode:oaep", "-aes256"), "must name SHA-256"),  # OAEP, SHA-1 defaults
        (("-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha512", "-aes256"), "not SHA-256"),
        ((*OAEP_SHA256, "-aes128"), "not AES-256-CBC"),
        ((*OAEP_SHA256, "-aes-256-gcm"), "not CMS EnvelopedData"),  # AuthEnvelopedData
    ],
    ids=["pkcs1v15", "oaep-sha1", "oaep-sha512", "aes128", "aes256-gcm"],
)
def test_other_algorithms_are_refused(
    recipient: Path, rsa_key: rsa.RSAPrivateKey, options: tuple[str, ...], refusal: str
) -> None:
    message = openssl_encrypt(recipient, *options)
    with pytest.raises(CmsError, match=refusal):
        open_enveloped_data(message, rsa_key)


def test_front_envelope_shape_matches_kms() -> None:
    """Version 2, subjectKeyIdentifier recipient, OAEP-SHA256, AES-256-CBC, segmented BER content."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = envelope(b"x" * 3000, key.public_key())
    root = ber.decode(message)
    assert ber.oid(root.children[0], what="t") == "1.2.840.113549.1.7.3"
    enveloped = root.children[1].children[0]
    assert ber.integer(enveloped.children[0], what="t") == 2
    (recipient_info,) = enveloped.children[1].children
    assert ber.integer(recipient_info.children[0], what="t") == 2
    rid = recipient_info.children[1]
    assert rid.is_(ber.CONTEXT, 0) and rid.content == subject_key_identifier(key.public_key())
    assert ber.oid(recipient_info.children[2].children[0], what="t") == "1.2.840.113549.1.1.7"
    content = enveloped.children[2].children[2]
    assert content.constructed and [len(c.content) for c in content.children] == [1024, 1024, 960]
    assert open_enveloped_data(message, key) == b"x" * 3000


def test_wrong_key_and_tampering_give_one_uniform_error(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = envelope(CONTENT, rsa_key.public_key(), ber=False)
    with pytest.raises(CmsError) as wrong_key:
        open_enveloped_data(message, other)
    # Flip a bit in the last ciphertext block: the padding check fails, with the same text.
    tampered = bytearray(message)
    tampered[-20] ^= 0x01
    with pytest.raises(CmsError) as bad_padding:
        open_enveloped_data(bytes(tampered), rsa_key)
    assert (
        str(wrong_key.value)
        == str(bad_padding.value)
        == "cannot open the enveloped data with the enclave key"
    )


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x30",
        b"\x30\x80",  # indefinite length without end-of-contents
        b"\x30\x05\x02\x01\x00",  # length runs past the data
        b"\x30\x03\x02\x01\x00\x00",  # trailing byte
        b"\x04\x80\x00\x00",  # indefinite length on a primitive element
        b"\x30\x84\xff\xff\xff\xff",  # absurd length
        b"\x30\x80" * 40 + b"\x00\x00" * 40,  # nesting beyond the depth bound
        tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010701"))),  # ContentInfo of plain data
    ],
)
def test_malformed_messages_raise_cms_error(message: bytes, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(CmsError):
        open_enveloped_data(message, rsa_key)


def test_ber_reader_basics() -> None:
    # Indefinite-length SEQUENCE holding a constructed OCTET STRING of two segments.
    data = bytes.fromhex("3080" + "2480" + "0402abcd" + "0401ef" + "0000" + "020180" + "0000")
    root = ber.decode(data)
    assert root.constructed and len(root.children) == 2
    assert ber.octets(root.children[0], what="t") == bytes.fromhex("abcdef")
    assert ber.integer(root.children[1], what="t") == -128
    # A high tag number ([100], two tag octets) with a long-form length.
    element = ber.decode(bytes.fromhex("9f64" + "8103") + b"\x00" * 3)
    assert (element.tag_class, element.number, element.content) == (ber.CONTEXT, 100, b"\x00" * 3)


@pytest.mark.parametrize(
    ("encoded", "dotted"),
    [
        ("2a864886f70d010107", "1.2.840.113549.1.1.7"),
        ("608648016503040201", "2.16.840.1.101.3.4.2.1"),
        ("60864801650304012a", "2.16.840.1.101.3.4.1.42"),
        ("550403", "2.5.4.3"),
        ("8837", "2.999"),
    ],
)
def test_oid_decoding(encoded: str, dotted: str) -> None:
    assert ber.oid(ber.decode(tlv(0x06, bytes.fromhex(encoded))), what="t") == dotted


def test_front_oid_encoder_matches_the_reader() -> None:
    for dotted in ("1.2.840.113549.1.7.3", "2.16.840.1.101.3.4.1.42", "2.999.1"):
        assert ber.oid(ber.decode(encode_oid(dotted)), what="t") == dotted
