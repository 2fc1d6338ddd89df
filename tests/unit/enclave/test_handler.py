"""Request handling in the enclave: spec 4.4 with decisions D1, D5, D10 and D12."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.support.enclave_keys import TEST_CREDENTIAL, LocalKeyDecryptor, VaultKey, encode_binary
from vault.common import hpke
from vault.common.messages import Credential, EnclaveErrorCode, EnclaveReply, EnclaveRequest
from vault.common.suites import P256_SHA256_AES256GCM
from vault.enclave.encoding import SealedValue
from vault.enclave.handler import RequestHandler
from vault.enclave.key_decryptor import KeyDecryptError

SECRET_CREDENTIAL = Credential.model_validate(
    {
        "AccessKeyId": "ASIA-SECRET-AKID-77",
        "SecretAccessKey": "SECRET-SAK-value-88",
        "Token": "SECRET-TOKEN-99",
    }
)
SECRET_VALUES = ("ASIA-SECRET-AKID-77", "SECRET-SAK-value-88", "SECRET-TOKEN-99")


def send(handler: RequestHandler, message: EnclaveRequest | dict[str, Any]) -> EnclaveReply:
    wire = message.to_wire() if isinstance(message, EnclaveRequest) else message
    return handler.handle(json.dumps(wire).encode("utf-8"))


def wire_of(key: VaultKey, fields: dict[str, str], /, **overrides: Any) -> dict[str, Any]:
    wire = key.request(fields).to_wire()
    wire["request"].update(overrides)
    return wire


# -- decryption ----------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["1", "2", None])
def test_upstream_hex_vector_through_the_handler(handler, upstream, upstream_key, encoding):
    request = upstream_key.request({"first_name": upstream["hex_field"]["value"]}, encoding=encoding)
    reply = send(handler, request)
    assert reply.to_wire() == {"fields": {"first_name": "Bob"}, "errors": []}


@pytest.mark.parametrize("encoding", ["1", "2", None])
def test_mixed_hex_and_binary_vault_decrypts(handler, upstream, upstream_key, encoding):
    # A legacy vault PATCHed with binary fields (D5): each field is parsed by its shape.
    fields = {
        "first_name": upstream["hex_field"]["value"],
        "last_name": upstream_key.seal_field("last_name", "Smith"),
        "city": upstream_key.seal_field("city", "Zürich", legacy_hex=True),
    }
    reply = send(handler, upstream_key.request(fields, encoding=encoding))
    assert reply.fields == {"first_name": "Bob", "last_name": "Smith", "city": "Zürich"}
    assert reply.errors == []


def test_binary_fields_keep_request_order_and_unicode(handler, vault_key):
    values = {"z_last": "Ω≈ç√", "a_first": "Hello, 世界! 🔐", "m_mid": "", "ssn9": "123456789"}
    fields = {name: vault_key.seal_field(name, value) for name, value in values.items()}
    reply = send(handler, vault_key.request(fields))
    assert reply.fields == values
    assert list(reply.fields) == list(values)
    assert reply.to_wire()["errors"] == []


def test_handle_request_accepts_a_parsed_model(handler, vault_key):
    request = vault_key.request({"name": vault_key.seal_field("name", "Ada")})
    assert handler.handle_request(request).fields == {"name": "Ada"}


def test_p256_vault(decryptor, handler):
    key = decryptor.create_vault_key("v_p256", P256_SHA256_AES256GCM)
    reply = send(handler, key.request({"x": key.seal_field("x", "y")}))
    assert reply.fields == {"x": "y"}


# -- per-field failures ---------------------------------------------------------------


def test_too_short_field_fails_alone(handler, vault_key):
    fields = {"first_name": base64.b64encode(bytes(50)).decode(), "ok": vault_key.seal_field("ok", "fine")}
    reply = send(handler, vault_key.request(fields))
    assert reply.fields == {"first_name": None, "ok": "fine"}
    assert reply.errors == [
        "[first_name] unable to decrypt data: encrypted data too short: 50 bytes, need at least 97 "
        "for P384_SHA384_AES256GCM"
    ]


def test_malformed_values_are_per_field_errors(handler, vault_key):
    fields = {"a": "not base64!", "b": "zz#zz", "c": "", "d": vault_key.seal_field("d", "kept")}
    reply = send(handler, vault_key.request(fields))
    assert reply.fields == {"a": None, "b": None, "c": None, "d": "kept"}
    assert [e.split("]")[0] for e in reply.errors] == ["[a", "[b", "[c"]
    assert all("unable to decrypt data: " in e for e in reply.errors)


def test_field_sealed_for_another_vault_fails_per_field(decryptor, handler):
    # Vault B holds the same key pair as vault A (its blob is bound to B, so the key call
    # succeeds), but the fields were sealed with vault A's id as HPKE info.
    key_a = decryptor.create_vault_key("v_A")
    sealed = {"first_name": key_a.seal_field("first_name", "Bob")}
    assert send(handler, key_a.request(sealed)).fields == {"first_name": "Bob"}

    der = decryptor.decrypt_private_key(
        ciphertext=key_a.encrypted_private_key, vault_id="v_A", region="r", credential=TEST_CREDENTIAL
    )
    key_b = VaultKey("v_B", key_a.suite, key_a.public_key, decryptor.encrypt_private_key(der, "v_B"))
    reply = send(handler, key_b.request(sealed))
    assert reply.fields == {"first_name": None}
    assert reply.errors == ["[first_name] unable to decrypt data: authentication failed"]


def test_key_blob_of_another_vault_is_refused_by_the_key_call(decryptor, handler):
    # Decision D10: the vault id is bound to the encrypted key, so replaying vault A's
    # key blob under vault B fails before any field is opened.
    key_a = decryptor.create_vault_key("v_A")
    replay = VaultKey("v_B", key_a.suite, key_a.public_key, key_a.encrypted_private_key)
    reply = send(handler, replay.request({"first_name": key_a.seal_field("first_name", "Bob")}))
    assert reply.is_global_failure
    assert reply.code is EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert reply.errors[0].startswith("failed to call KMS: InvalidCiphertextException")


def test_field_moved_to_another_name_fails(handler, vault_key):
    ciphertext = vault_key.seal_field("first_name", "Bob")
    reply = send(handler, vault_key.request({"last_name": ciphertext, "First_Name": ciphertext}))
    # aad is the lower-cased name: a case change still opens, a rename does not.
    assert reply.fields == {"last_name": None, "First_Name": "Bob"}
    assert reply.errors == ["[last_name] unable to decrypt data: authentication failed"]


def test_error_label_is_lower_cased(handler, vault_key):
    reply = send(handler, vault_key.request({"SSN9": "AAAA"}))
    assert reply.errors[0].startswith("[ssn9] unable to decrypt data: encrypted data too short: 3 bytes")


def test_non_utf8_plaintext(handler, vault_key):
    enc, ct = hpke.seal(
        vault_key.suite, vault_key.public_key, vault_key.vault_id.encode(), b"blob", b"ok\xff\xfe"
    )
    reply = send(handler, vault_key.request({"blob": encode_binary(SealedValue(enc, ct))}))
    assert reply.fields == {"blob": None}
    assert reply.errors == ["[blob] unable to convert plaintext data to string: invalid UTF-8 at byte 2"]


def test_absent_field_is_null_with_an_error(handler, vault_key):
    # Decision D1: a field the vault does not hold is answered, not fatal.
    wire = vault_key.request({"first_name": vault_key.seal_field("first_name", "Bob")}).to_wire()
    wire["request"]["fields"] = {"ssn9": None, "first_name": wire["request"]["fields"]["first_name"]}
    reply = send(handler, wire)
    assert reply.to_wire() == {
        "fields": {"ssn9": None, "first_name": "Bob"},
        "errors": ["[ssn9] field not present in vault"],
    }


# -- global failures: validation before the key call -------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"vault_id": ""}, "vault_id cannot be empty"),
        ({"region": ""}, "region cannot be empty"),
        ({"region": "us east 1"}, "region contains invalid characters"),
        ({"region": "eu-west-1/../x"}, "region contains invalid characters"),
        ({"region": "éu-west-1"}, "region contains invalid characters"),
        ({"suite_id": ""}, "suite_id cannot be empty"),
        ({"encrypted_private_key": ""}, "encrypted_private_key cannot be empty"),
        ({"fields": {f"f{i}": "AAAA" for i in range(1001)}}, "field count 1001 exceeds maximum 1000"),
    ],
)
def test_validation_messages(decryptor, handler, vault_key, override, message):
    reply = send(handler, wire_of(vault_key, {}, **override))
    assert reply.to_wire() == {"errors": [message], "code": "InvalidRequest"}
    assert decryptor.calls == 0


def test_thousand_fields_are_accepted(decryptor, handler, vault_key):
    reply = send(handler, wire_of(vault_key, {f"f{i}": "AAAA" for i in range(1000)}))
    assert not reply.is_global_failure
    assert len(reply.fields or {}) == 1000 and len(reply.errors) == 1000
    assert decryptor.calls == 1


@pytest.mark.parametrize(
    ("suite_id", "message"),
    [
        ("aW52YWxpZA==", "unknown suite identifier"),
        ("not-valid-base64!!!", "unable to base64 decode input"),
    ],
)
def test_invalid_suite(decryptor, handler, vault_key, suite_id, message):
    reply = send(handler, wire_of(vault_key, {}, suite_id=suite_id))
    assert reply.code is EnclaveErrorCode.INVALID_SUITE
    assert reply.errors[0].startswith(message)
    assert decryptor.calls == 0


@pytest.mark.parametrize("encoding", ["utf-8", "3", ""])
def test_unknown_encoding(decryptor, handler, vault_key, encoding):
    reply = send(handler, wire_of(vault_key, {}, encoding=encoding))
    assert reply.to_wire() == {"errors": [f"unknown encoding: {encoding}"], "code": "InvalidEncoding"}
    assert decryptor.calls == 0


def test_expression_too_long_is_refused_before_the_key_call(decryptor, handler, vault_key):
    reply = send(handler, wire_of(vault_key, {}, expressions={"ok": "1", "big": "x" * 10241}))
    assert reply.code is EnclaveErrorCode.EXPRESSION_TOO_LONG
    assert reply.errors == ["[big] expression length 10241 bytes exceeds maximum 10240"]
    assert decryptor.calls == 0


def test_expression_length_counts_utf8_bytes(decryptor, handler, vault_key):
    reply = send(handler, wire_of(vault_key, {}, expressions={"e": "é" * 5121}))
    assert reply.errors == ["[e] expression length 10242 bytes exceeds maximum 10240"]


def test_key_ciphertext_must_be_base64(decryptor, handler, vault_key):
    reply = send(handler, wire_of(vault_key, {}, encrypted_private_key="not base64!"))
    assert reply.code is EnclaveErrorCode.INVALID_REQUEST
    assert reply.errors[0].startswith("unable to base64 decode encrypted_private_key")
    assert decryptor.calls == 0


def test_lone_surrogate_vault_id(handler, vault_key):
    raw = json.dumps(wire_of(vault_key, {}, vault_id="v_\ud800")).encode()
    reply = handler.handle(raw)
    assert reply.errors == ["vault_id is not valid Unicode"]


# -- global failures: parsing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "start"),
    [
        (b"", "failed to parse request: Expecting value"),
        (b"{", "failed to parse request: "),
        (b"\xff\xfe", "failed to parse request: invalid UTF-8 at byte 0"),
        (b"[]", "invalid request: "),
        (b"null", "invalid request: "),
        (b"{}", "invalid request: credential: Field required; request: Field required"),
        (b"[" * 100000, "failed to parse request: "),
        (b"1" * 5000, "failed to parse request: "),
    ],
)
def test_unparseable_requests(handler, raw, start):
    reply = handler.handle(raw)
    assert reply.is_global_failure
    assert reply.code is EnclaveErrorCode.INVALID_REQUEST
    assert reply.errors[0].startswith(start)


def test_validation_errors_never_quote_input(handler, vault_key):
    wire = wire_of(vault_key, {})
    wire["request"]["fields"] = {"first_name": ["SECRET-CIPHERTEXT-1"]}
    wire["credential"]["AccessKeyId"] = 123456789012
    reply = send(handler, wire)
    assert reply.code is EnclaveErrorCode.INVALID_REQUEST
    text = reply.errors[0]
    assert "request.fields.first_name: Input should be a valid string" in text
    assert "credential.AccessKeyId: Input should be a valid string" in text
    assert "SECRET-CIPHERTEXT-1" not in text and "123456789012" not in text


# -- the key call -------------------------------------------------------------------


class RaisingDecryptor:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def decrypt_private_key(
        self, *, ciphertext: bytes, vault_id: str, region: str, credential: Credential
    ) -> bytes:
        raise self.exc


class FixedDecryptor:
    def __init__(self, der: bytes) -> None:
        self.der = der
        self.seen: list[dict[str, Any]] = []

    def decrypt_private_key(
        self, *, ciphertext: bytes, vault_id: str, region: str, credential: Credential
    ) -> bytes:
        self.seen.append(
            {"ciphertext": ciphertext, "vault_id": vault_id, "region": region, "credential": credential}
        )
        return self.der


def test_key_decryptor_receives_the_request_context(upstream, upstream_der, upstream_key):
    fixed = FixedDecryptor(upstream_der)
    request = upstream_key.request(
        {"first_name": upstream["hex_field"]["value"]}, region="eu-west-2", credential=SECRET_CREDENTIAL
    )
    assert RequestHandler(fixed).handle_request(request).fields == {"first_name": "Bob"}
    assert fixed.seen == [
        {
            "ciphertext": upstream_key.encrypted_private_key,
            "vault_id": upstream["vault_id"],
            "region": "eu-west-2",
            "credential": SECRET_CREDENTIAL,
        }
    ]


@pytest.mark.parametrize("code", [EnclaveErrorCode.KEY_DECRYPT_FAILED, EnclaveErrorCode.ATTESTATION_FAILED])
def test_key_decrypt_error_keeps_its_code(vault_key, code):
    handler = RequestHandler(RaisingDecryptor(KeyDecryptError("KMS decrypt failed: AccessDenied", code)))
    reply = send(handler, vault_key.request({}))
    assert reply.to_wire() == {
        "errors": ["failed to call KMS: KMS decrypt failed: AccessDenied"],
        "code": code.value,
    }


def test_unexpected_key_decryptor_failure_text_is_not_returned(vault_key):
    handler = RequestHandler(RaisingDecryptor(RuntimeError("SECRET internal detail")))
    reply = send(handler, vault_key.request({}))
    assert reply.to_wire() == {"errors": ["failed to call KMS: RuntimeError"], "code": "KeyDecryptFailed"}


def test_key_of_the_wrong_curve(vault_key):
    der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    )
    reply = send(RequestHandler(FixedDecryptor(der)), vault_key.request({}))
    assert reply.code is EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert reply.errors[0].startswith("unable to decode PKCS#8 private key: key is on secp256r1")


def test_key_that_is_not_pkcs8(vault_key):
    reply = send(RequestHandler(FixedDecryptor(b"\x00garbage")), vault_key.request({}))
    assert reply.code is EnclaveErrorCode.KEY_DECRYPT_FAILED
    assert reply.errors[0].startswith("unable to decode PKCS#8 private key: ")


def test_handler_never_raises_on_internal_errors(decryptor, handler, vault_key, monkeypatch):
    import vault.enclave.handler as module

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("SECRET")

    monkeypatch.setattr(module, "_open_fields", boom)
    request = vault_key.request({"a": vault_key.seal_field("a", "b")})
    for reply in (handler.handle_request(request), send(handler, request)):
        assert reply.to_wire() == {"errors": ["internal error"], "code": "InternalError"}
    assert decryptor.calls == 2


# -- secrets stay out of logs, reprs and replies ------------------------------------------


def test_credentials_and_plaintext_never_reach_logs(caplog, decryptor, vault_key):
    caplog.set_level(logging.DEBUG)
    handler = RequestHandler(decryptor)
    plaintext = "PLAINTEXT-SENTINEL-4711"
    fields = {"first_name": vault_key.seal_field("first_name", plaintext), "bad": "AAAA"}
    ok = send(handler, vault_key.request(fields, credential=SECRET_CREDENTIAL))
    assert ok.fields == {"first_name": plaintext, "bad": None}
    send(handler, vault_key.request(fields, credential=SECRET_CREDENTIAL, region="bad region"))
    RequestHandler(RaisingDecryptor(RuntimeError(SECRET_VALUES[0]))).handle_request(
        vault_key.request(fields, credential=SECRET_CREDENTIAL)
    )
    assert caplog.records, "the handler logs each outcome"
    logged = caplog.text + " ".join(repr(getattr(r, "fields", "")) for r in caplog.records)
    for secret in (*SECRET_VALUES, plaintext, fields["first_name"]):
        assert secret not in logged


def test_credentials_are_redacted_in_request_repr(vault_key):
    request = vault_key.request({"a": "CIPHER"}, credential=SECRET_CREDENTIAL)
    for text in (repr(request), str(request), repr(request.credential), str(request.credential)):
        assert "AccessKeyId=[REDACTED]" in text
        for secret in (*SECRET_VALUES, "CIPHER"):
            assert secret not in text


def test_replies_never_carry_credentials(vault_key):
    wire = vault_key.request({}, credential=SECRET_CREDENTIAL).to_wire()
    wire["credential"]["SecretAccessKey"] = ["not", "a", "string", SECRET_VALUES[1]]
    reply = send(RequestHandler(LocalKeyDecryptor()), wire)
    assert SECRET_VALUES[1] not in json.dumps(reply.to_wire())
