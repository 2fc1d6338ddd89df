"""The key-path test double (tests/support/enclave_keys.py) used by every tier's tests."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.support.enclave_keys import TEST_CREDENTIAL, LocalKeyDecryptor
from vault.common import hpke
from vault.common.suites import P521_SHA512_AES256GCM
from vault.enclave.encoding import parse_field_value
from vault.enclave.key_decryptor import KeyDecryptError
from vault.enclave.keys import recipient_from_pkcs8


def _decrypt(decryptor: LocalKeyDecryptor, blob: bytes, vault_id: str) -> bytes:
    return decryptor.decrypt_private_key(
        ciphertext=blob, vault_id=vault_id, region="us-east-1", credential=TEST_CREDENTIAL
    )


def test_round_trip_is_bound_to_the_vault_id(upstream_der):
    decryptor = LocalKeyDecryptor()
    blob = decryptor.encrypt_private_key(upstream_der, "v_one")
    assert _decrypt(decryptor, blob, "v_one") == upstream_der
    with pytest.raises(KeyDecryptError, match="InvalidCiphertextException") as info:
        _decrypt(decryptor, blob, "v_two")
    assert info.value.code.value == "KeyDecryptFailed"
    assert decryptor.calls == 2


def test_blob_is_useless_under_another_master_key(upstream_der):
    blob = LocalKeyDecryptor().encrypt_private_key(upstream_der, "v")
    with pytest.raises(KeyDecryptError):
        _decrypt(LocalKeyDecryptor(), blob, "v")


def test_same_master_key_reads_the_blob(upstream_der):
    master = bytes(range(32))
    blob = LocalKeyDecryptor(master).encrypt_private_key(upstream_der, "v")
    assert _decrypt(LocalKeyDecryptor(master), blob, "v") == upstream_der


@pytest.mark.parametrize("blob", [b"", b"LKD1", b"XXXX" + bytes(40)])
def test_garbage_blob(blob):
    with pytest.raises(KeyDecryptError, match="not a key blob"):
        _decrypt(LocalKeyDecryptor(), blob, "v")


def test_created_vault_key_is_consistent():
    decryptor = LocalKeyDecryptor()
    key = decryptor.create_vault_key("v_521", P521_SHA512_AES256GCM)
    der = _decrypt(decryptor, key.encrypted_private_key, "v_521")
    recipient = recipient_from_pkcs8(der, P521_SHA512_AES256GCM)
    assert hpke.load_public_key(P521_SHA512_AES256GCM, key.public_key).public_numbers() == (
        load_der_public_key(key.public_key).public_numbers()  # type: ignore[union-attr]
    )
    sealed = parse_field_value(key.seal_field(" Name ", "Grace"), P521_SHA512_AES256GCM)
    # The API normalises the field name (strip, lower-case) for the aad.
    assert recipient.open(sealed.enc, sealed.ct, b"v_521", b"name") == b"Grace"
    hex_sealed = parse_field_value(key.seal_field("name", "Grace", legacy_hex=True), P521_SHA512_AES256GCM)
    assert recipient.open(hex_sealed.enc, hex_sealed.ct, b"v_521", b"name") == b"Grace"


def test_request_builder():
    key = LocalKeyDecryptor().create_vault_key("v_req")
    request = key.request({"a": "x"}, expressions={"e": "1"}, encoding=None, region="eu-west-1")
    assert request.request.vault_id == "v_req"
    assert request.request.suite_id == "SFBLRQARAAIAAg=="
    assert base64.b64decode(request.request.encrypted_private_key) == key.encrypted_private_key
    assert (request.request.region, request.request.encoding) == ("eu-west-1", None)
    assert request.request.expressions == {"e": "1"}


def test_reprs_carry_no_key_material():
    decryptor = LocalKeyDecryptor()
    key = decryptor.create_vault_key("v_repr")
    assert repr(decryptor) == "LocalKeyDecryptor(calls=0)"
    assert key.encrypted_private_key.hex()[:16] not in repr(key)
    assert "v_repr" in repr(key)
