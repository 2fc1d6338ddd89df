"""The API signs each decrypt it audited; the enclave reveals only what the API signed (D16)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.enclave_keys import TEST_CREDENTIAL
from unit.api.doubles import Reply, enclave_parent
from unit.api.harness import ApiHarness, api_harness
from vault.api.kms import SigningError
from vault.common.authorization import (
    AUTHORIZER_CONTEXT_KEY,
    Grant,
    SignedAuthorization,
    authorizer_digest,
    expression_digest,
)
from vault.common.messages import DecryptRequest, EnclaveErrorCode, EnclaveRequest
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY

PERSON = {"first_name": "Ann", "ssn9": "123456789", "dob": "1986-01-01"}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    with api_harness(monkeypatch, authorizer=True) as harness:
        yield harness


def _authorizer_public_key(api: ApiHarness) -> bytes:
    assert api.service.authorizer is not None
    return api.service.authorizer.public_key


def _decrypt(api: ApiHarness, vault_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.call("POST", f"/vaults/{vault_id}/decrypt", body=body)
    return response.status, response.json


def _enclave(api: ApiHarness, body: dict[str, Any]) -> dict[str, Any]:
    """What the enclave answers to ``body`` sent directly, as a parent (or anyone past it) could."""
    request = EnclaveRequest(credential=TEST_CREDENTIAL, request=DecryptRequest.model_validate(body))
    return api.enclave.handle_request(request).to_wire()


def test_decrypts_round_trip_with_a_signed_authorization(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    body = {
        "fields": ["ssn4", "first_name", "email"],
        "reason": "KYC",
        "expressions": {"y": "date(dob).age()"},
    }
    status, reply = _decrypt(api, vault_id, {**body, "fields": [*body["fields"], "dob"]})
    assert status == 200
    assert reply["data"]["ssn4"] == "6789"
    (sent,) = api.parent.sent
    signed = SignedAuthorization.from_wire(DecryptRequest.model_validate(sent.body).authorization)
    assert signed.public_key == _authorizer_public_key(api)
    grant = Grant.from_bytes(signed.claims)
    # Exactly what was sent: the present fields (email is not stored, so not sent) and the expressions.
    assert grant.vault_id == vault_id
    assert grant.fields == ("dob", "first_name", "ssn4")
    assert grant.expressions == (("y", expression_digest("date(dob).age()")),)
    assert grant.expires_at - grant.issued_at == 30
    (record,) = [item for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault"]
    assert record["_q"]["S"] == grant.request_id


def test_new_vaults_are_bound_to_the_authorizer(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    (call,) = api.kms.key_pair_calls
    digest = authorizer_digest(_authorizer_public_key(api))
    assert call["EncryptionContext"] == {ENCRYPTION_CONTEXT_KEY: vault_id, AUTHORIZER_CONTEXT_KEY: digest}
    item = api.vault_item(vault_id)
    assert item is not None
    with pytest.raises(ClientError):
        api.kms.decrypt(CiphertextBlob=item["_sk"]["B"], EncryptionContext={ENCRYPTION_CONTEXT_KEY: vault_id})


def test_a_captured_request_replayed_to_the_enclave_is_refused(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})[0] == 200
    (sent,) = api.parent.sent
    reply = _enclave(api, sent.body)
    assert "fields" not in reply
    assert reply["code"] == EnclaveErrorCode.UNAUTHORIZED.value
    assert "AuthorizationReplayed" in reply["errors"][0]


def test_a_parent_that_widens_the_request_gets_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    item = api.vault_item(vault_id)
    assert item is not None
    widened: list[dict[str, Any]] = []

    def widen(body: dict[str, Any]) -> Reply:
        # Keep the API's authorization for ["first_name"], add the SSN's ciphertext.
        changed = copy.deepcopy(body)
        changed["fields"]["ssn9"] = base64.b64encode(bytes(item["ssn9"]["B"])).decode()
        widened.append(changed)
        return enclave_parent(api.enclave)(changed)

    api.respond_with(widen)
    status, reply = _decrypt(api, vault_id, {"fields": ["first_name"], "reason": "KYC"})
    assert (status, reply["code"], reply["enclaveCode"]) == (502, "EnclaveDecryptFailed", "Unauthorized")
    assert "123456789" not in str(reply)
    assert "AuthorizationMismatch" in reply["errors"][0]


def test_an_unsigned_request_gets_nothing(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    assert _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})[0] == 200
    body = dict(api.parent.sent[0].body)
    del body["authorization"]
    reply = _enclave(api, body)
    assert "fields" not in reply
    assert "AuthorizationMissing" in reply["errors"][0]


def test_a_failed_signature_stops_the_decrypt_and_is_audited(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)

    class Refusing:
        public_key = _authorizer_public_key(api)

        def sign(self, message: bytes) -> bytes:
            raise SigningError("AccessDeniedException")

    api.service.authorizer = Refusing()
    status, reply = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, reply["code"]) == (502, "AuthorizationFailed")
    assert api.parent.sent == []
    (record,) = [item for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault"]
    assert record["_o"] == {"S": "AuthorizationFailed"}


def test_a_vault_created_without_an_authorizer_is_not_opened_under_one(api: ApiHarness) -> None:
    """Vaults from before the authorizer (key context: vault id only) need a re-wrap to be read."""
    authorizer = api.service.authorizer
    api.service.key_pairs = type(api.service.key_pairs)(api.kms, api.key_arn)
    vault_id = api.create(PERSON)
    api.service.authorizer = authorizer
    status, reply = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, reply["enclaveCode"]) == (502, "KeyDecryptFailed")
    assert "123456789" not in str(reply)
