"""Enclave messages: wire shapes and the redaction of credentials and field values."""

from __future__ import annotations

import json

from vault.common.messages import (
    BUSY_MESSAGE,
    Credential,
    DecryptRequest,
    EnclaveErrorCode,
    EnclaveReply,
    EnclaveRequest,
)

SECRETS = {"AccessKeyId": "AKIASECRETVALUE1234", "SecretAccessKey": "s3cr3t/KEY+value", "Token": "tok-SECRET"}


def _request() -> EnclaveRequest:
    return EnclaveRequest.model_validate(
        {
            "credential": SECRETS,
            "request": {
                "vault_id": "v_1",
                "region": "us-east-1",
                "fields": {"first_name": "CIPHERTEXT-VALUE"},
                "suite_id": "SFBLRQARAAIAAg==",
                "encrypted_private_key": "a2V5",
            },
        }
    )


def test_credential_repr_and_str_redact_all_values():
    credential = Credential.model_validate(SECRETS)
    for text in (repr(credential), str(credential), f"{credential}"):
        assert "[REDACTED]" in text
        for secret in SECRETS.values():
            assert secret not in text


def test_request_repr_never_shows_credentials_or_field_values():
    request = _request()
    for text in (repr(request), str(request), repr(request.request), str(request.request)):
        for secret in SECRETS.values():
            assert secret not in text
        assert "CIPHERTEXT-VALUE" not in text
    assert "first_name" in repr(request.request)


def test_request_wire_form_round_trips():
    request = _request()
    wire = request.to_wire()
    assert wire["credential"] == SECRETS
    assert "expressions" not in wire["request"] and "encoding" not in wire["request"]
    assert EnclaveRequest.model_validate(json.loads(json.dumps(wire))) == request


def test_reply_wire_shapes():
    ok = EnclaveReply(fields={"a": "x", "b": None}, errors=[])
    assert ok.to_wire() == {"fields": {"a": "x", "b": None}, "errors": []}
    assert not ok.is_global_failure
    busy = EnclaveReply.failure(EnclaveErrorCode.BUSY, BUSY_MESSAGE)
    assert busy.to_wire() == {"errors": ["enclave busy"], "code": "EnclaveBusy"}
    assert busy.is_global_failure


def test_reply_special_characters_round_trip_without_double_escaping():
    value = 'quote" newline\n tab\t backslash\\ unicode é 🔐 control\x01'
    reply = EnclaveReply(fields={"v": value}, errors=[])
    assert json.loads(json.dumps(reply.to_wire()))["fields"]["v"] == value


def test_decrypt_request_defaults():
    request = DecryptRequest(vault_id="v", region="r", fields={}, suite_id="s", encrypted_private_key="k")
    assert request.expressions is None and request.encoding is None


def test_reply_repr_names_fields_but_never_shows_values():
    reply = EnclaveReply(fields={"first_name": "PLAINTEXT-Bob", "ssn9": None}, errors=["[ssn9] x"])
    for text in (repr(reply), str(reply), f"{reply}"):
        assert "PLAINTEXT-Bob" not in text
        assert "first_name" in text and "[ssn9] x" in text
    failure = EnclaveReply.failure(EnclaveErrorCode.BUSY, BUSY_MESSAGE)
    assert (
        repr(failure)
        == "EnclaveReply(fields=None, errors=['enclave busy'], code=<EnclaveErrorCode.BUSY: 'EnclaveBusy'>)"
    )
