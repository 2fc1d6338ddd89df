"""Field encodings: round trips for every suite, and total parsing of arbitrary values."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tests.support.enclave_keys import encode_binary, encode_hex
from vault.common.suites import VAULT_SUITES
from vault.enclave.encoding import (
    EncodingError,
    SealedValue,
    parse_field_value,
    split_binary,
)

suites = st.sampled_from(VAULT_SUITES)


@st.composite
def sealed_values(draw: st.DrawFn):
    suite = draw(suites)
    enc = draw(st.binary(min_size=suite.n_enc, max_size=suite.n_enc))
    ct = draw(st.binary(min_size=1, max_size=100))
    return suite, SealedValue(enc, ct)


@given(sealed_values())
def test_binary_round_trip(case):
    suite, sealed = case
    assert parse_field_value(encode_binary(sealed), suite) == sealed


@given(sealed_values())
def test_hex_round_trip(case):
    suite, sealed = case
    assert parse_field_value(encode_hex(sealed), suite) == sealed


@given(suite=suites, raw=st.binary(max_size=200))
def test_binary_split_ok_iff_long_enough(suite, raw):
    try:
        sealed = split_binary(raw, suite)
    except EncodingError as exc:
        assert len(raw) < suite.n_enc
        assert str(exc).startswith(f"encrypted data too short: {len(raw)} bytes")
        return
    assert len(raw) >= suite.n_enc
    assert sealed.enc + sealed.ct == raw and len(sealed.enc) == suite.n_enc


@given(suite=suites, value=st.text(max_size=300))
def test_any_text_parses_or_fails_cleanly(suite, value):
    try:
        sealed = parse_field_value(value, suite)
    except EncodingError as exc:
        if len(value) >= 24:
            assert value not in str(exc)
        return
    assert len(sealed.enc) == suite.n_enc


@given(suite=suites, raw=st.binary(max_size=300))
def test_canonical_base64_of_any_bytes_splits(suite, raw):
    value = base64.b64encode(raw).decode()
    if len(raw) >= suite.n_enc:
        assert parse_field_value(value, suite) == SealedValue(raw[: suite.n_enc], raw[suite.n_enc :])
