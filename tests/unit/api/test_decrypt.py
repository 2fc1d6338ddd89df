"""POST /vaults/{vault_id}/decrypt (spec 1.9; decisions D1, D2, D7, D10)."""

from __future__ import annotations

import base64

import pytest
import requests
from urllib3.exceptions import ProtocolError

from unit.api.doubles import PARENT_URL, canned, enclave_parent, raising
from unit.api.harness import ApiHarness
from vault.api.models import SCHEMA_FIELDS
from vault.api.parent import ParentClient
from vault.common.suites import DEFAULT_SUITE
from vault.enclave.handler import load_default_engine

PERSON = {"first_name": "Ann", "last_name": "Lee", "ssn9": "123456789", "dob": "1986-01-01"}


def _decrypt(api: ApiHarness, vault_id: str, body: object) -> tuple[int, dict[str, object]]:
    response = api.call("POST", f"/vaults/{vault_id}/decrypt", body=body)
    return response.status, response.json


def _outcomes(api: ApiHarness, vault_id: str) -> list[str]:
    return [record["_o"]["S"] for record in api.audit_items(vault_id) if record["_e"]["S"] == "DecryptVault"]


def test_round_trip_through_the_enclave(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    status, body = _decrypt(api, vault_id, {"fields": ["first_name", "ssn4", "ssn9", "dob"], "reason": "KYC"})
    assert status == 200
    assert body == {
        "data": {"first_name": "Ann", "ssn4": "6789", "ssn9": "123456789", "dob": "1986-01-01"},
        "errors": [],
    }


def test_request_sent_to_the_parent(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    _decrypt(api, vault_id, {"fields": ["first_name", "email"], "reason": "KYC"})
    (sent,) = api.parent.sent
    item = api.vault_item(vault_id)
    assert item is not None
    assert (sent.method, sent.url) == ("POST", f"{PARENT_URL}/decrypt")
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.timeout == 5.0
    assert sent.verify is True
    assert sent.body == {
        "vault_id": vault_id,
        "region": "us-east-1",
        # D1: the missing field is not sent (the parent refuses null values).
        "fields": {"first_name": base64.b64encode(bytes(item["first_name"]["B"])).decode()},
        "suite_id": DEFAULT_SUITE.suite_id_b64,
        "encrypted_private_key": base64.b64encode(bytes(item["_sk"]["B"])).decode(),
        "encoding": "2",
    }


def test_missing_fields_are_null_with_an_error(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    status, body = _decrypt(api, vault_id, {"fields": ["ssn9", "first_name", "email"], "reason": "KYC"})
    assert status == 200
    assert list(body["data"].items()) == [("ssn9", None), ("first_name", "Ann"), ("email", None)]
    assert body["errors"] == ["[ssn9] field not present in vault", "[email] field not present in vault"]
    assert _outcomes(api, vault_id) == ["PartialSuccess"]


def test_nothing_to_decrypt_does_not_call_the_parent(api: ApiHarness) -> None:
    vault_id = api.create({})
    status, body = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, body) == (200, {"data": {"ssn9": None}, "errors": ["[ssn9] field not present in vault"]})
    status, body = _decrypt(api, vault_id, {"fields": [], "reason": "KYC"})
    assert (status, body) == (200, {"data": {}, "errors": []})
    assert api.parent.sent == []
    assert _outcomes(api, vault_id) == ["Success", "PartialSuccess"]


def test_field_names_are_normalised(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    status, body = _decrypt(
        api, vault_id, {"fields": [" First_Name ", "FIRST_NAME", "SSN4"], "reason": "KYC"}
    )
    assert (status, body) == (200, {"data": {"first_name": "Ann", "ssn4": "6789"}, "errors": []})


@pytest.mark.parametrize("name", ["_sk", "_pk", "pk", "_id", "nickname", ""])
def test_non_schema_field_names_are_refused_before_anything_happens(api: ApiHarness, name: str) -> None:
    vault_id = api.create(PERSON)
    before = api.items()
    status, body = _decrypt(api, vault_id, {"fields": ["first_name", name], "reason": "KYC"})
    assert status == 422
    quoted = f"'{name}' is not" if name else "not"
    assert body["errors"] == [
        {
            "loc": ["body", "fields", 1],
            "type": "vault_field",
            "msg": f"fields[1]: {quoted} a vault field; known: {', '.join(SCHEMA_FIELDS)}",
        }
    ]
    assert api.parent.sent == []
    assert api.items() == before


def test_audit_records_the_request(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    _decrypt(api, vault_id, {"fields": ["ssn9", "First_Name"], "reason": "fraud check #42"})
    record = api.audit_items(vault_id)[0]
    assert record["_e"] == {"S": "DecryptVault"}
    assert record["_r"] == {"S": "fraud check #42"}
    assert record["_f"] == {"L": [{"S": "ssn9"}, {"S": "first_name"}]}
    assert record["_o"] == {"S": "Success"}


def test_missing_vault_is_404_without_audit_or_parent_call(api: ApiHarness) -> None:
    status, body = _decrypt(api, "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL", {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, body["code"]) == (404, "VaultNotFound")
    assert api.items() == []
    assert api.parent.sent == []


def test_a_vault_key_replayed_for_another_vault_is_refused(api: ApiHarness) -> None:
    """D10: the encryption context binds the encrypted key to its vault id."""
    victim = api.create({"ssn9": "123456789"})
    attacker = api.create({"ssn9": "000000000"})
    victim_item = api.vault_item(victim)
    assert victim_item is not None
    api.dynamodb.update_item(
        TableName=api.service.store.table_name,
        Key={"pk": {"S": f"VAULT##{attacker}"}, "sk": {"S": "v0"}},
        UpdateExpression="SET #sk = :sk",
        ExpressionAttributeNames={"#sk": "_sk"},
        ExpressionAttributeValues={":sk": victim_item["_sk"]},
    )
    status, body = _decrypt(api, attacker, {"fields": ["ssn9"], "reason": "KYC"})
    assert status == 502
    assert body["code"] == "EnclaveDecryptFailed"
    assert body["enclaveCode"] == "KeyDecryptFailed"
    assert body["errors"][0].startswith("failed to call KMS: InvalidCiphertextException")
    assert "123456789" not in str(body)
    assert _outcomes(api, attacker) == ["EnclaveDecryptFailed"]


def test_enclave_global_failure_is_a_502_with_the_enclave_code(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.respond_with(
        canned(200, {"errors": ["failed to call KMS: AccessDenied"], "code": "AttestationFailed"})
    )
    status, body = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, body) == (
        502,
        {
            "statusCode": 502,
            "code": "EnclaveDecryptFailed",
            "message": "The enclave could not decrypt the vault",
            "enclaveCode": "AttestationFailed",
            "errors": ["failed to call KMS: AccessDenied"],
        },
    )
    assert _outcomes(api, vault_id) == ["EnclaveDecryptFailed"]


def test_upstream_parent_global_failure_without_code(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.respond_with(canned(200, {"errors": ["failed to call KMS: boom"]}))
    status, body = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert status == 502
    assert (body["code"], body["enclaveCode"]) == ("EnclaveDecryptFailed", None)


#: Failures after which the API cannot know whether the enclave acted (the request went
#: out and no answer came); a connect timeout or a refused connection never sent it.
_OUTCOME_UNKNOWN = {"enclave-timeout", "read-timeout", "lost"}


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        pytest.param(
            canned(503, {"code": 503, "message": "enclave busy"}), 503, "EnclaveUnavailable", id="busy"
        ),
        pytest.param(
            canned(404, {"code": 404, "message": "No enclaves found"}), 503, "EnclaveUnavailable", id="none"
        ),
        pytest.param(
            canned(504, {"code": 504, "message": "enclave 16 did not answer in time"}),
            504,
            "EnclaveTimeout",
            id="enclave-timeout",
        ),
        pytest.param(
            canned(200, {"errors": ["failed to call KMS: KMS did not answer in time"], "code": "KmsTimeout"}),
            504,
            "KmsTimeout",
            id="kms-timeout",
        ),
        pytest.param(
            canned(500, {"code": 500, "message": "Internal Server Error"}), 502, "ParentError", id="500"
        ),
        pytest.param(canned(400, {"code": 400, "message": "Validation error"}), 502, "ParentError", id="400"),
        pytest.param(canned(413, b""), 502, "ParentError", id="413-empty"),
        pytest.param(canned(302, b""), 502, "ParentError", id="redirect"),
        pytest.param(canned(200, b"<html>not json</html>"), 502, "ParentError", id="not-json"),
        pytest.param(canned(200, ["not", "an", "object"]), 502, "ParentError", id="not-object"),
        pytest.param(canned(200, {"fields": {}, "errors": "x"}), 502, "ParentError", id="bad-errors"),
        pytest.param(raising(requests.ReadTimeout("read")), 504, "ParentTimeout", id="read-timeout"),
        pytest.param(raising(requests.ConnectTimeout("connect")), 504, "ParentTimeout", id="connect-timeout"),
        pytest.param(raising(requests.ConnectionError("refused")), 502, "ParentUnreachable", id="refused"),
        pytest.param(
            raising(requests.ConnectionError(ProtocolError("Connection aborted."))),
            502,
            "ParentUnreachable",
            id="lost",
        ),
        pytest.param(raising(requests.exceptions.SSLError("verify")), 502, "ParentUnreachable", id="tls"),
        pytest.param(raising(requests.exceptions.InvalidHeader("bad")), 502, "ParentError", id="other"),
    ],
)
def test_parent_failures_have_stable_codes_and_are_audited(
    api: ApiHarness, reply: object, status: int, code: str, request: pytest.FixtureRequest
) -> None:
    vault_id = api.create(PERSON)
    api.respond_with(reply)  # type: ignore[arg-type]
    got_status, body = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (got_status, body["statusCode"], body["code"]) == (status, status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert "data" not in body
    assert len(api.parent.sent) == 1, "redirects are not followed, failures are not retried"
    (record,) = (item for item in api.audit_items(vault_id) if item["_e"]["S"] == "DecryptVault")
    if request.node.callspec.id in _OUTCOME_UNKNOWN:
        # The request went out and no answer came: the enclave may have decrypted.
        assert (record["_o"]["S"], record["_c"]["S"]) == ("Unknown", code)
    else:
        assert record["_o"]["S"] == code
        assert "_c" not in record


def test_parent_timeout_and_ca_bundle_are_configurable(api: ApiHarness, tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("test CA")
    session = api.service.parent._session
    api.service.parent = ParentClient(
        f"{PARENT_URL}/decrypt", timeout=1.5, ca_bundle=str(bundle), session=session
    )
    vault_id = api.create(PERSON)
    _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    (sent,) = api.parent.sent
    assert (sent.timeout, sent.verify) == (1.5, str(bundle))


def test_vault_without_key_is_corrupt_and_audited(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.dynamodb.update_item(
        TableName=api.service.store.table_name,
        Key={"pk": {"S": f"VAULT##{vault_id}"}, "sk": {"S": "v0"}},
        UpdateExpression="REMOVE #sk",
        ExpressionAttributeNames={"#sk": "_sk"},
    )
    status, body = _decrypt(api, vault_id, {"fields": ["ssn9"], "reason": "KYC"})
    assert (status, body["code"]) == (500, "VaultCorrupt")
    assert api.parent.sent == []
    assert _outcomes(api, vault_id) == ["VaultCorrupt"]


def test_overlong_expression_is_refused_before_the_enclave(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    status, body = _decrypt(
        api, vault_id, {"fields": ["dob"], "reason": "KYC", "expressions": {"x": "1" * 10241}}
    )
    assert status == 422
    assert body["errors"] == [
        {
            "loc": ["body", "expressions", "x"],
            "type": "expression_too_long",
            "msg": "expressions.x: must be at most 10240 bytes (UTF-8)",
        }
    ]
    assert api.parent.sent == []


def test_expressions_are_forwarded_in_order(api: ApiHarness) -> None:
    vault_id = api.create(PERSON)
    api.respond_with(canned(200, {"fields": {"dob": "1986-01-01", "b": 2, "a": 1}, "errors": []}))
    expressions = {"b": "2", "a": "1"}
    status, body = _decrypt(api, vault_id, {"fields": ["dob"], "reason": "KYC", "expressions": expressions})
    assert status == 200
    assert list(api.parent.sent[0].body["expressions"].items()) == [("b", "2"), ("a", "1")]
    assert body == {"data": {"dob": "1986-01-01", "b": 2, "a": 1}, "errors": []}


@pytest.mark.skipif(load_default_engine() is None, reason="the enclave's CEL engine is not available")
def test_cel_expressions_through_the_enclave(api: ApiHarness) -> None:
    api.respond_with(enclave_parent(api.enclave))
    vault_id = api.create(PERSON)
    status, body = _decrypt(
        api, vault_id, {"fields": ["ssn9"], "reason": "KYC", "expressions": {"last4": "ssn9.substring(5)"}}
    )
    assert status == 200
    assert body["data"] == {"ssn9": "123456789", "last4": "6789"}
