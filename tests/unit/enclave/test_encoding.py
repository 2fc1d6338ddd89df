"""Field value parsing: binary (base64) and legacy hex, chosen per field by shape (D5)."""

from __future__ import annotations

import base64

import pytest

from tests.support.enclave_keys import encode_binary, encode_hex
from vault.common.suites import P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM
from vault.enclave.encoding import (
    EncodingError,
    SealedValue,
    parse_binary,
    parse_field_value,
    split_binary,
    split_hex,
    validate_request_encoding,
)

SUITES = [P256_SHA256_AES256GCM, P384_SHA384_AES256GCM, P521_SHA512_AES256GCM]


@pytest.mark.parametrize("value", [None, "1", "2"])
def test_known_request_encodings(value):
    validate_request_encoding(value)


@pytest.mark.parametrize("value", ["3", "utf-8", "", " 2", "binary"])
def test_unknown_request_encoding(value):
    with pytest.raises(EncodingError) as info:
        validate_request_encoding(value)
    assert str(info.value) == f"unknown encoding: {value}"


def test_unknown_encoding_message_is_bounded():
    with pytest.raises(EncodingError) as info:
        validate_request_encoding("x" * 5000)
    assert len(str(info.value)) < 80


def test_upstream_hex_vector(upstream):
    sealed = parse_field_value(upstream["hex_field"]["value"], P384_SHA384_AES256GCM)
    enc_hex, ct_hex = upstream["hex_field"]["value"].split("#")
    assert sealed == SealedValue(bytes.fromhex(enc_hex), bytes.fromhex(ct_hex))
    assert (len(sealed.enc), len(sealed.ct)) == (97, 19)


def test_upstream_binary_split_vector(upstream):
    vector = upstream["binary_split"]
    raw = base64.b64decode(vector["value"])
    sealed = parse_field_value(vector["value"], P384_SHA384_AES256GCM)
    assert len(sealed.enc) == vector["enc_length"] == 97
    assert len(sealed.ct) == vector["ct_length"] == 18
    assert sealed.enc + sealed.ct == raw
    assert sealed.enc == raw[:97] and sealed.ct == raw[97:]


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_per_suite_split(suite):
    raw = b"\xab" * suite.n_enc + b"\xcd" * 10
    sealed = parse_field_value(base64.b64encode(raw).decode(), suite)
    assert sealed == SealedValue(b"\xab" * suite.n_enc, b"\xcd" * 10)


def test_too_short_binary():
    value = base64.b64encode(bytes(50)).decode()
    with pytest.raises(EncodingError) as info:
        parse_field_value(value, P384_SHA384_AES256GCM)
    assert str(info.value) == "encrypted data too short: 50 bytes, need at least 97 for P384_SHA384_AES256GCM"


def test_exactly_nenc_bytes_gives_empty_ciphertext():
    assert split_binary(bytes(65), P256_SHA256_AES256GCM) == SealedValue(bytes(65), b"")


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("not base64!", "unable to base64 decode input"),
        ("QUJD\n", "unable to base64 decode input"),
        ("QUI", "unable to base64 decode input"),  # padding is required
        ("QUI=QUI=", "unable to base64 decode input"),
        ("QUJ=", "non-canonical encoding"),  # non-zero padding bits
        ("Ünïcode", "non-ASCII character"),
    ],
)
def test_malformed_base64(value, detail):
    with pytest.raises(EncodingError, match=detail):
        parse_binary(value, P384_SHA384_AES256GCM)


def test_empty_value_is_too_short():
    with pytest.raises(EncodingError, match="encrypted data too short: 0 bytes"):
        parse_field_value("", P384_SHA384_AES256GCM)


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("04AB#00", "unable to hex decode encapsulated key: invalid symbol at 2"),
        ("04ab#0G", "unable to hex decode ciphertext: invalid symbol at 1"),
        ("04a#00", "unable to hex decode encapsulated key: invalid length 3"),
        ("04ab#00#11", "unable to hex decode ciphertext: invalid symbol at 2"),
        ("04ab#00", "encapsulated key is 2 bytes, need 97 for P384_SHA384_AES256GCM"),
    ],
)
def test_malformed_hex(value, detail):
    with pytest.raises(EncodingError) as info:
        parse_field_value(value, P384_SHA384_AES256GCM)
    assert str(info.value) == detail


def test_hex_without_separator_is_refused_by_the_hex_parser():
    value = "ab" * 60
    with pytest.raises(EncodingError) as info:
        split_hex(value, P384_SHA384_AES256GCM)
    assert str(info.value) == "unable to split value on '#': no separator in 120-character value"


def test_errors_never_quote_the_value():
    secretish = "deadbeef" * 20
    for value in (secretish + "#zz", secretish + "!", "#" + secretish.upper()):
        with pytest.raises(EncodingError) as info:
            parse_field_value(value, P384_SHA384_AES256GCM)
        assert "deadbeef" not in str(info.value).lower()


def test_shape_not_flag_decides(upstream):
    # A legacy hex value parses as hex whatever the request's encoding flag says, and a
    # hex-looking value without '#' is base64 (D5).
    assert parse_field_value(upstream["hex_field"]["value"], P384_SHA384_AES256GCM).enc[:1] == b"\x04"
    with pytest.raises(EncodingError, match="encrypted data too short"):
        parse_field_value("abcd", P384_SHA384_AES256GCM)


@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_encoders_round_trip(suite):
    sealed = SealedValue(bytes(range(suite.n_enc)), b"ciphertext-and-tag")
    assert parse_field_value(encode_binary(sealed), suite) == sealed
    assert parse_field_value(encode_hex(sealed), suite) == sealed
    assert encode_hex(sealed) == encode_hex(sealed).lower()
