"""The enclave's CMS opener against OpenSSL, the front's builder, and malformed input."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from emulator.aws.kms.cms import encode_oid, envelope, subject_key_identifier, tlv
from vault.enclave import ber
from vault.enclave.cms import (
    OID_AES256_CBC,
    OID_DATA,
    OID_ENVELOPED_DATA,
    OID_MGF1,
    OID_P_SPECIFIED,
    OID_RSAES_OAEP,
    OID_SHA256,
    CmsError,
    open_enveloped_data,
)

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


# -- every refusal by its text, built piece by piece ----------------------------------------------
#
# A message is assembled from DER pieces, each replaceable, so that one test per check changes
# exactly one thing. The texts are what the enclave reports as "cannot open the KMS answer: ...".

OID_RSA_PKCS1 = "1.2.840.113549.1.1.1"
OID_SHA1 = "1.3.14.3.2.26"
OID_AES128_CBC = "2.16.840.1.101.3.4.1.2"
NULL_DER = b"\x05\x00"
CONTENT_KEY = bytes(range(32))
IV = bytes(range(16, 32))


def _oid(dotted: str) -> bytes:
    return encode_oid(dotted)


def _seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def _int(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(1, "big", signed=True))


def _alg(dotted: str, *params: bytes) -> bytes:
    return _seq(_oid(dotted), *params)


def _oaep_params(
    hash_: bytes | None = None, mask: bytes | None = None, *extra: bytes, omit: tuple[int, ...] = ()
) -> bytes:
    fields = {
        0: tlv(0xA0, hash_ if hash_ is not None else _alg(OID_SHA256)),
        1: tlv(0xA1, mask if mask is not None else _alg(OID_MGF1, _alg(OID_SHA256))),
    }
    return _seq(*(value for number, value in fields.items() if number not in omit), *extra)


def _wrapped(rsa_key: rsa.RSAPrivateKey, key: bytes = CONTENT_KEY) -> bytes:
    oaep = OAEP(mgf=MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return tlv(0x04, rsa_key.public_key().encrypt(key, oaep))


def _recipient(
    rsa_key: rsa.RSAPrivateKey,
    *,
    version: bytes | None = None,
    algorithm: bytes | None = None,
    encrypted_key: bytes | None = None,
) -> bytes:
    return _seq(
        version if version is not None else _int(2),
        tlv(0x80, b"\x01" * 20),
        algorithm if algorithm is not None else _alg(OID_RSAES_OAEP, _oaep_params()),
        encrypted_key if encrypted_key is not None else _wrapped(rsa_key),
    )


def _ciphertext(content: bytes = CONTENT) -> bytes:
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES256(CONTENT_KEY), modes.CBC(IV)).encryptor()
    return encryptor.update(padder.update(content) + padder.finalize()) + encryptor.finalize()


def _content_info_parts(
    *,
    content_type: bytes | None = None,
    algorithm: bytes | None = None,
    content: bytes | None = None,
) -> list[bytes]:
    return [
        content_type if content_type is not None else _oid(OID_DATA),
        algorithm if algorithm is not None else _alg(OID_AES256_CBC, tlv(0x04, IV)),
        content if content is not None else tlv(0x80, _ciphertext()),
    ]


def _message(
    rsa_key: rsa.RSAPrivateKey,
    *,
    recipients: list[bytes] | None = None,
    recipient_infos: bytes | None = None,
    encrypted_content_info: bytes | None = None,
    parts: list[bytes] | None = None,
    enveloped: bytes | None = None,
    wrapper: bytes | None = None,
    content_info: bytes | None = None,
) -> bytes:
    if recipient_infos is None:
        recipient_infos = tlv(0x31, b"".join(recipients if recipients is not None else [_recipient(rsa_key)]))
    if encrypted_content_info is None:
        encrypted_content_info = _seq(*_content_info_parts())
    if enveloped is None:
        enveloped = _seq(
            *(parts if parts is not None else [_int(2), recipient_infos, encrypted_content_info])
        )
    if wrapper is None:
        wrapper = tlv(0xA0, enveloped)
    if content_info is None:
        content_info = _seq(_oid(OID_ENVELOPED_DATA), wrapper)
    return content_info


def _refusal(message: bytes, rsa_key: rsa.RSAPrivateKey) -> str:
    with pytest.raises(CmsError) as refused:
        open_enveloped_data(message, rsa_key)
    return str(refused.value)


def _malformed(text: str) -> str:
    return f"malformed CMS message: {text}"


OPEN_FAILED = "cannot open the enveloped data with the enclave key"


def test_the_built_message_opens(rsa_key: rsa.RSAPrivateKey) -> None:
    """The control for everything below: only the change each test makes is refused."""
    assert open_enveloped_data(_message(rsa_key), rsa_key) == CONTENT


@pytest.mark.parametrize(
    ("pieces", "text"),
    [
        ({"content_info": tlv(0x31, _oid(OID_ENVELOPED_DATA))}, _malformed("ContentInfo: unexpected tag")),
        ({"content_info": b"\x10\x00"}, _malformed("ContentInfo: unexpected tag")),
        ({"content_info": _seq()}, _malformed("ContentInfo: missing element")),
        ({"content_info": _seq(_int(1))}, _malformed("ContentInfo: unexpected tag")),
        ({"content_info": _seq(tlv(0x06, b"\x81"))}, _malformed("ContentInfo: malformed OBJECT IDENTIFIER")),
        ({"content_info": _seq(_oid(OID_DATA), tlv(0xA0, _seq()))}, "the message is not CMS EnvelopedData"),
        ({"content_info": _seq(_oid(OID_ENVELOPED_DATA))}, _malformed("ContentInfo: missing element")),
        ({"wrapper": tlv(0xA1, _seq())}, _malformed("ContentInfo: unexpected tag")),
        ({"wrapper": tlv(0x80, b"\x30\x00")}, _malformed("ContentInfo: unexpected tag")),
        ({"wrapper": tlv(0xA0, b"")}, _malformed("EnvelopedData: malformed explicit tag")),
        ({"wrapper": tlv(0xA0, _seq() + _seq())}, _malformed("EnvelopedData: malformed explicit tag")),
        ({"enveloped": tlv(0x31, b"")}, _malformed("EnvelopedData: unexpected tag")),
        ({"enveloped": b"\x10\x00"}, _malformed("EnvelopedData: unexpected tag")),
        ({"enveloped": _seq(_int(2), tlv(0x31, b""))}, "EnvelopedData is incomplete"),
    ],
)
def test_the_envelope_is_checked(rsa_key: rsa.RSAPrivateKey, pieces: dict[str, bytes], text: str) -> None:
    assert _refusal(_message(rsa_key, **pieces), rsa_key) == text


def test_the_enveloped_data_version_must_be_an_integer(rsa_key: rsa.RSAPrivateKey) -> None:
    parts = [tlv(0x04, b"\x02"), tlv(0x31, _recipient(rsa_key)), _seq(*_content_info_parts())]
    assert _refusal(_message(rsa_key, parts=parts), rsa_key) == _malformed(
        "EnvelopedData version: unexpected tag"
    )


def test_originator_info_is_skipped_and_still_needs_two_parts_after_it(rsa_key: rsa.RSAPrivateKey) -> None:
    recipients = tlv(0x31, _recipient(rsa_key))
    content = _seq(*_content_info_parts())
    originator = tlv(0xA0, b"")
    with_originator = _message(rsa_key, parts=[_int(2), originator, recipients, content])
    assert open_enveloped_data(with_originator, rsa_key) == CONTENT
    # [1] is not originatorInfo: it stands where RecipientInfos must be.
    other = _message(rsa_key, parts=[_int(2), tlv(0xA1, b""), recipients, content])
    assert _refusal(other, rsa_key) == _malformed("RecipientInfos: unexpected tag")
    short = _message(rsa_key, parts=[_int(2), originator, recipients])
    assert _refusal(short, rsa_key) == "EnvelopedData is incomplete"


KEK_RECIPIENT = tlv(0xA2, _int(4))  # a KEKRecipientInfo: not key transport, skipped


@pytest.mark.parametrize(
    ("recipient_infos", "text"),
    [
        (tlv(0x30, b""), _malformed("RecipientInfos: unexpected tag")),
        (b"\x11\x00", _malformed("RecipientInfos: unexpected tag")),
        (tlv(0x31, b""), "RecipientInfos must hold 1 to 8 recipients"),
        (tlv(0x31, KEK_RECIPIENT), "no key-transport recipient"),
        (tlv(0x31, _seq(_int(2), _int(0), _int(0))), "no key-transport recipient"),
    ],
)
def test_recipient_infos_are_checked(rsa_key: rsa.RSAPrivateKey, recipient_infos: bytes, text: str) -> None:
    assert _refusal(_message(rsa_key, recipient_infos=recipient_infos), rsa_key) == text


def test_at_most_eight_recipients_and_others_are_skipped(rsa_key: rsa.RSAPrivateKey) -> None:
    genuine = _recipient(rsa_key)
    pkcs1 = _recipient(rsa_key, algorithm=_alg(OID_RSA_PKCS1, NULL_DER))
    assert (
        open_enveloped_data(_message(rsa_key, recipients=[KEK_RECIPIENT] * 7 + [genuine]), rsa_key) == CONTENT
    )
    assert open_enveloped_data(_message(rsa_key, recipients=[pkcs1, genuine]), rsa_key) == CONTENT
    nine = _message(rsa_key, recipients=[KEK_RECIPIENT] * 8 + [genuine])
    assert _refusal(nine, rsa_key) == "RecipientInfos must hold 1 to 8 recipients"
    assert _refusal(_message(rsa_key, recipients=[pkcs1]), rsa_key) == "the key transport is not RSAES-OAEP"
    assert _refusal(_message(rsa_key, recipients=[KEK_RECIPIENT, pkcs1]), rsa_key) == (
        "the key transport is not RSAES-OAEP"
    )


def test_key_transport_versions(rsa_key: rsa.RSAPrivateKey) -> None:
    for version in (0, 2):
        message = _message(rsa_key, recipients=[_recipient(rsa_key, version=_int(version))])
        assert open_enveloped_data(message, rsa_key) == CONTENT
    version_1 = _message(rsa_key, recipients=[_recipient(rsa_key, version=_int(1))])
    assert _refusal(version_1, rsa_key) == "unsupported KeyTransRecipientInfo version 1"
    not_integer = _message(rsa_key, recipients=[_recipient(rsa_key, version=tlv(0x04, b"\x02"))])
    assert _refusal(not_integer, rsa_key) == _malformed("KeyTransRecipientInfo version: unexpected tag")


@pytest.mark.parametrize(
    ("algorithm", "text"),
    [
        (tlv(0x31, _oid(OID_RSAES_OAEP)), _malformed("key encryption algorithm: unexpected tag")),
        (b"\x10\x00", _malformed("key encryption algorithm: unexpected tag")),
        (_seq(), _malformed("key encryption algorithm: missing element")),
        (_seq(_int(1)), _malformed("key encryption algorithm: unexpected tag")),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(), NULL_DER),
            _malformed("key encryption algorithm: unexpected elements"),
        ),
        (_alg(OID_RSAES_OAEP), "RSAES-OAEP parameters are missing (SHA-1 defaults are not accepted)"),
        (_alg(OID_RSAES_OAEP, NULL_DER), _malformed("RSAES-OAEP parameters: unexpected tag")),
        (_alg(OID_RSAES_OAEP, b"\x10\x00"), _malformed("RSAES-OAEP parameters: unexpected tag")),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, None, _int(0))),
            "RSAES-OAEP parameters carry unexpected elements",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(omit=(1,))),
            "RSAES-OAEP must name SHA-256 and MGF1-SHA-256 explicitly",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(omit=(0,))),
            "RSAES-OAEP must name SHA-256 and MGF1-SHA-256 explicitly",
        ),
        (
            _alg(
                OID_RSAES_OAEP, _seq(tlv(0x80, _alg(OID_SHA256)), tlv(0xA1, _alg(OID_MGF1, _alg(OID_SHA256))))
            ),
            _malformed("OAEP hash: malformed explicit tag"),
        ),
        (
            _alg(OID_RSAES_OAEP, _seq(tlv(0xA0, _alg(OID_SHA256) + NULL_DER), tlv(0xA1, _alg(OID_MGF1)))),
            _malformed("OAEP hash: malformed explicit tag"),
        ),
        (_alg(OID_RSAES_OAEP, _oaep_params(_alg(OID_SHA1))), "OAEP hash is not SHA-256"),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(_alg(OID_SHA256, _int(0)))),
            "OAEP hash has unexpected parameters",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(tlv(0x31, _oid(OID_SHA256)))),
            _malformed("OAEP hash: unexpected tag"),
        ),
        (_alg(OID_RSAES_OAEP, _oaep_params(_seq(_int(1)))), _malformed("OAEP hash: unexpected tag")),
        (
            _alg(
                OID_RSAES_OAEP, _seq(tlv(0xA0, _alg(OID_SHA256)), tlv(0x81, _alg(OID_MGF1, _alg(OID_SHA256))))
            ),
            _malformed("OAEP mask: malformed explicit tag"),
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, tlv(0x31, _oid(OID_MGF1)))),
            _malformed("OAEP mask: unexpected tag"),
        ),
        (_alg(OID_RSAES_OAEP, _oaep_params(None, _seq(_int(1)))), _malformed("OAEP mask: unexpected tag")),
        (_alg(OID_RSAES_OAEP, _oaep_params(None, _alg(OID_MGF1))), "OAEP mask generation is not MGF1"),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, _alg(OID_SHA256, _alg(OID_SHA256)))),
            "OAEP mask generation is not MGF1",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, _alg(OID_MGF1, _alg(OID_SHA1)))),
            "MGF1 hash is not SHA-256",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, _alg(OID_MGF1, _alg(OID_SHA256, _int(0))))),
            "MGF1 hash has unexpected parameters",
        ),
        (
            _alg(OID_RSAES_OAEP, _oaep_params(None, _alg(OID_MGF1, tlv(0x31, _oid(OID_SHA256))))),
            _malformed("MGF1 hash: unexpected tag"),
        ),
    ],
)
def test_the_key_transport_algorithm_is_checked(
    rsa_key: rsa.RSAPrivateKey, algorithm: bytes, text: str
) -> None:
    message = _message(rsa_key, recipients=[_recipient(rsa_key, algorithm=algorithm)])
    assert _refusal(message, rsa_key) == text


def test_null_hash_parameters_are_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    params = _oaep_params(_alg(OID_SHA256, NULL_DER), _alg(OID_MGF1, _alg(OID_SHA256, NULL_DER)))
    message = _message(rsa_key, recipients=[_recipient(rsa_key, algorithm=_alg(OID_RSAES_OAEP, params))])
    assert open_enveloped_data(message, rsa_key) == CONTENT


@pytest.mark.parametrize(
    ("label", "text"),
    [
        (tlv(0xA2, _alg(OID_P_SPECIFIED, tlv(0x04, b""))), None),
        (tlv(0xA2, _alg(OID_P_SPECIFIED, b"\x24\x00")), None),  # constructed, no segments
        (tlv(0xA2, _alg(OID_P_SPECIFIED, tlv(0x04, b"x"))), "OAEP label is not empty"),
        (tlv(0xA2, _alg(OID_P_SPECIFIED, tlv(0x24, tlv(0x04, b"x")))), "OAEP label is not empty"),
        (tlv(0xA2, _alg(OID_SHA256, tlv(0x04, b""))), "OAEP label source is not pSpecified"),
        (tlv(0xA2, _alg(OID_P_SPECIFIED)), "OAEP label source is not pSpecified"),
        (tlv(0xA2, _alg(OID_P_SPECIFIED, _int(0))), _malformed("OAEP label: unexpected tag")),
        (tlv(0xA2, _alg(OID_P_SPECIFIED, tlv(0x24, _int(0)))), _malformed("OAEP label: unexpected tag")),
        (tlv(0x82, _alg(OID_P_SPECIFIED, tlv(0x04, b""))), _malformed("OAEP label: malformed explicit tag")),
        (tlv(0xA2, tlv(0x31, _oid(OID_P_SPECIFIED))), _malformed("OAEP label: unexpected tag")),
    ],
)
def test_the_oaep_label_must_be_empty(rsa_key: rsa.RSAPrivateKey, label: bytes, text: str | None) -> None:
    algorithm = _alg(OID_RSAES_OAEP, _oaep_params(None, None, label))
    message = _message(rsa_key, recipients=[_recipient(rsa_key, algorithm=algorithm)])
    if text is None:
        assert open_enveloped_data(message, rsa_key) == CONTENT
    else:
        assert _refusal(message, rsa_key) == text


def test_the_encrypted_key_is_an_octet_string_possibly_segmented(rsa_key: rsa.RSAPrivateKey) -> None:
    wrapped = _wrapped(rsa_key)
    value = ber.octets(ber.decode(wrapped), what="t")
    segmented = tlv(0x24, tlv(0x04, value[:100]) + tlv(0x04, value[100:]))
    message = _message(rsa_key, recipients=[_recipient(rsa_key, encrypted_key=segmented)])
    assert open_enveloped_data(message, rsa_key) == CONTENT
    for bad in (_int(1), tlv(0x24, _int(1))):
        message = _message(rsa_key, recipients=[_recipient(rsa_key, encrypted_key=bad)])
        assert _refusal(message, rsa_key) == _malformed("encrypted key: unexpected tag")


def test_content_keys_are_tried_in_turn_and_must_be_aes256(rsa_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for_other = _recipient(rsa_key, encrypted_key=_wrapped(other))
    short_key = _recipient(rsa_key, encrypted_key=_wrapped(rsa_key, CONTENT_KEY[:16]))
    genuine = _recipient(rsa_key)
    assert (
        open_enveloped_data(_message(rsa_key, recipients=[for_other, short_key, genuine]), rsa_key) == CONTENT
    )
    assert _refusal(_message(rsa_key, recipients=[for_other, short_key]), rsa_key) == OPEN_FAILED


@pytest.mark.parametrize(
    ("encrypted_content_info", "text"),
    [
        (tlv(0x31, b"".join(_content_info_parts())), _malformed("EncryptedContentInfo: unexpected tag")),
        (b"\x10\x00", _malformed("EncryptedContentInfo: unexpected tag")),
        (_seq(), _malformed("EncryptedContentInfo: missing element")),
        (_seq(_int(1)), _malformed("EncryptedContentInfo: unexpected tag")),
        (
            _seq(*_content_info_parts(content_type=_oid(OID_ENVELOPED_DATA))),
            "the enveloped content type is not data",
        ),
        (_seq(_oid(OID_DATA)), _malformed("EncryptedContentInfo: missing element")),
        (
            _seq(*_content_info_parts(algorithm=_alg(OID_AES128_CBC, tlv(0x04, IV)))),
            "the content encryption is not AES-256-CBC",
        ),
        (
            _seq(*_content_info_parts(algorithm=tlv(0x31, _oid(OID_AES256_CBC)))),
            _malformed("content encryption: unexpected tag"),
        ),
        (_seq(*_content_info_parts(algorithm=_alg(OID_AES256_CBC))), "the AES-256-CBC IV is missing"),
        (
            _seq(*_content_info_parts(algorithm=_alg(OID_AES256_CBC, _int(1)))),
            "the AES-256-CBC IV is missing",
        ),
        (
            _seq(*_content_info_parts(algorithm=_alg(OID_AES256_CBC, tlv(0x04, IV[:15])))),
            "the AES-256-CBC IV must be 16 bytes",
        ),
        (
            _seq(*_content_info_parts(algorithm=_alg(OID_AES256_CBC, tlv(0x24, _int(1))))),
            _malformed("IV: unexpected tag"),
        ),
        (_seq(*_content_info_parts()[:2]), "the encrypted content is detached"),
        (
            _seq(*_content_info_parts(content=tlv(0x81, _ciphertext()))),
            _malformed("encrypted content: unexpected tag"),
        ),
        (
            _seq(*_content_info_parts(content=tlv(0xA0, _int(1)))),
            _malformed("encrypted content: unexpected tag"),
        ),
        (
            _seq(*_content_info_parts(content=tlv(0x80, b""))),
            "the encrypted content is not a whole number of AES blocks",
        ),
        (
            _seq(*_content_info_parts(content=tlv(0x80, _ciphertext()[:-1]))),
            "the encrypted content is not a whole number of AES blocks",
        ),
    ],
)
def test_the_encrypted_content_is_checked(
    rsa_key: rsa.RSAPrivateKey, encrypted_content_info: bytes, text: str
) -> None:
    assert _refusal(_message(rsa_key, encrypted_content_info=encrypted_content_info), rsa_key) == text


def test_a_segmented_iv_and_content_open(rsa_key: rsa.RSAPrivateKey) -> None:
    ciphertext = _ciphertext()
    parts = _content_info_parts(
        algorithm=_alg(OID_AES256_CBC, tlv(0x24, tlv(0x04, IV[:5]) + tlv(0x04, IV[5:]))),
        content=tlv(0xA0, tlv(0x04, ciphertext[:32]) + tlv(0x04, ciphertext[32:])),
    )
    assert open_enveloped_data(_message(rsa_key, encrypted_content_info=_seq(*parts)), rsa_key) == CONTENT


def test_a_ber_error_names_what_is_wrong(rsa_key: rsa.RSAPrivateKey) -> None:
    assert _refusal(b"\x30", rsa_key) == _malformed("truncated length")
