"""HPKE suite identifiers (upstream spec 2.2)."""

from __future__ import annotations

import struct

import pytest

from vault.common.suites import (
    DEFAULT_SUITE,
    P256_SHA256_AES256GCM,
    P384_SHA384_AES256GCM,
    P521_SHA512_AES256GCM,
    VAULT_SUITES,
    Aead,
    Kdf,
    Kem,
    SuiteError,
    suite_from_b64,
    suite_from_id,
)

EXPECTED = [
    (P256_SHA256_AES256GCM, [72, 80, 75, 69, 0, 16, 0, 1, 0, 2], "SFBLRQAQAAEAAg==", 65, 32),
    (P384_SHA384_AES256GCM, [72, 80, 75, 69, 0, 17, 0, 2, 0, 2], "SFBLRQARAAIAAg==", 97, 48),
    (P521_SHA512_AES256GCM, [72, 80, 75, 69, 0, 18, 0, 3, 0, 2], "SFBLRQASAAMAAg==", 133, 66),
]


@pytest.mark.parametrize(("suite", "raw", "b64", "n_enc", "n_sk"), EXPECTED)
def test_suite_constants(suite, raw, b64, n_enc, n_sk):
    assert suite.suite_id == bytes(raw)
    assert suite.suite_id_b64 == b64
    assert suite.n_enc == n_enc
    assert suite.n_sk == n_sk
    assert suite.aead is Aead.AES_256_GCM
    assert suite.suite_id == b"HPKE" + struct.pack(">HHH", suite.kem, suite.kdf, suite.aead)
    assert suite_from_b64(b64) is suite
    assert suite_from_id(bytes(raw)) is suite


def test_default_is_p384():
    assert DEFAULT_SUITE is P384_SHA384_AES256GCM
    assert suite_from_b64("SFBLRQARAAIAAg==") == P384_SHA384_AES256GCM
    assert (DEFAULT_SUITE.kem, DEFAULT_SUITE.kdf) == (Kem.DHKEM_P384_HKDF_SHA384, Kdf.HKDF_SHA384)


def test_vault_suites_are_the_three_nist_curves():
    assert [s.kem for s in VAULT_SUITES] == [
        Kem.DHKEM_P256_HKDF_SHA256,
        Kem.DHKEM_P384_HKDF_SHA384,
        Kem.DHKEM_P521_HKDF_SHA512,
    ]


def test_p256_uses_aes_256_not_128():
    assert P256_SHA256_AES256GCM.suite_id_b64 != "SFBLRQAQAAEAAQ=="


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("aW52YWxpZA==", "unknown suite identifier"),
        ("", "unknown suite identifier"),
        ("not-valid-base64!!!", "unable to base64 decode input"),
        ("SFBLRQAQAAEAAQ==", "unknown suite identifier"),  # P-256 with AES-128: not a vault suite
        ("SFBLRQARAAIAAg", "unable to base64 decode input"),  # padding is required
        ("SFBLRQARAAIAAgé=", "unable to base64 decode input"),
    ],
)
def test_unknown_or_malformed_suite(value, message):
    with pytest.raises(SuiteError, match=message):
        suite_from_b64(value)


def test_suite_error_is_a_value_error():
    assert issubclass(SuiteError, ValueError)
