"""HTTP behaviour shared by all routes: error bodies, security headers (D8), 404/405/415/500, Swagger."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
import requests

from unit.api.doubles import canned, raising
from unit.api.events import ApiResponse, invoke, rest_event
from unit.api.harness import ApiHarness, api_harness
from vault.api.dependencies import get_service
from vault.api.handler import app
from vault.api.headers import SECURITY_HEADERS
from vault.api.models import SCHEMA_FIELDS

MISSING = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"


def assert_secure(response: ApiResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status)


def assert_error(response: ApiResponse, status: int, code: str) -> None:
    assert response.status == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json
    assert (body["statusCode"], body["code"]) == (status, code)
    assert isinstance(body["message"], str) and body["message"]
    assert_secure(response)


def _every_kind_of_response(api: ApiHarness) -> list[tuple[int, ApiResponse]]:
    vault_id = api.create({"first_name": "Ann"})
    decrypt = f"/vaults/{vault_id}/decrypt"
    responses: list[tuple[int, ApiResponse]] = [
        (200, api.call("POST", "/vaults", body={})),
        (200, api.call("GET", f"/vaults/{vault_id}", query={"fields": "first_name"})),
        (200, api.call("PATCH", f"/vaults/{vault_id}", body={"last_name": "Lee"})),
        (200, api.call("POST", decrypt, body={"fields": ["first_name"], "reason": "r"})),
        (200, api.call("GET", f"/vaults/{vault_id}/audit")),
        (200, api.call("GET", "/swagger")),
        (200, api.call("GET", "/swagger", query={"format": "json"})),
        (404, api.call("GET", f"/vaults/{MISSING}")),
        (404, api.call("GET", "/nowhere")),
        (404, api.call("GET", f"/vaults/{vault_id}/unknown")),
        (405, api.call("PUT", f"/vaults/{vault_id}")),
        (415, api.call("POST", "/vaults", raw_body="first_name=Ann", headers={"Content-Type": "text/plain"})),
        (422, api.call("POST", "/vaults", body={"ssn9": "1"})),
        (422, api.call("POST", "/vaults", raw_body="{")),
        (422, api.call("GET", f"/vaults/{vault_id}/audit", query={"limit": "0"})),
    ]
    api.respond_with(canned(200, {"errors": ["failed to call KMS: denied"], "code": "KeyDecryptFailed"}))
    responses.append((502, api.call("POST", decrypt, body={"fields": ["first_name"], "reason": "r"})))
    api.respond_with(canned(503, {"code": 503, "message": "enclave busy"}))
    responses.append((503, api.call("POST", decrypt, body={"fields": ["first_name"], "reason": "r"})))
    api.respond_with(raising(requests.ReadTimeout("slow")))
    responses.append((504, api.call("POST", decrypt, body={"fields": ["first_name"], "reason": "r"})))
    return responses


def test_every_response_carries_the_security_headers(api: ApiHarness) -> None:
    for status, response in _every_kind_of_response(api):
        assert response.status == status, response.text
        assert_secure(response)


def test_conflict_and_internal_errors_carry_the_headers(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault_id = api.create({})
    monkeypatch.setattr("vault.api.service.new_vault_id", lambda: vault_id)
    assert_error(api.call("POST", "/vaults", body={}), 409, "TransactionCancelled")

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret-123456789 leaked into an exception text")

    monkeypatch.setattr(api.service, "presence", explode)
    assert_error(api.call("GET", f"/vaults/{vault_id}"), 500, "InternalError")


def test_unexpected_errors_are_logged_without_their_text(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("ssn 123456789")

    monkeypatch.setattr(api.service, "presence", explode)
    with caplog.at_level(logging.DEBUG):
        response = api.call("GET", f"/vaults/{MISSING}")
    assert response.json == {"statusCode": 500, "code": "InternalError", "message": "Internal server error"}
    (record,) = [r for r in caplog.records if r.getMessage() == "Unhandled error"]
    assert record.error_type == "RuntimeError"  # type: ignore[attr-defined]
    assert any("explode" in frame for frame in record.stack)  # type: ignore[attr-defined]
    assert "123456789" not in caplog.text
    assert all("123456789" not in str(r.__dict__) for r in caplog.records)


def test_unknown_route_and_method() -> None:
    response = invoke(rest_event("GET", "/nowhere"))
    assert response.json == {"statusCode": 404, "code": "NotFound", "message": "Not found"}
    assert_secure(response)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/vaults", "POST"),
        ("DELETE", "/vaults", "POST"),
        ("POST", f"/vaults/{MISSING}", "GET, PATCH, DELETE"),
        ("PUT", f"/vaults/{MISSING}", "GET, PATCH, DELETE"),
        ("GET", f"/vaults/{MISSING}/decrypt", "POST"),
        ("POST", f"/vaults/{MISSING}/audit", "GET"),
        ("OPTIONS", f"/vaults/{MISSING}/audit", "GET"),
    ],
)
def test_known_path_with_other_method_is_405(method: str, path: str, allow: str) -> None:
    response = invoke(rest_event(method, path))
    assert_error(response, 405, "MethodNotAllowed")
    assert response.headers["Allow"] == allow


def test_allowed_methods_table_matches_the_routes(api: ApiHarness) -> None:
    from vault.api.routes import ALLOWED_METHODS

    for rule, methods in ALLOWED_METHODS.items():
        path = "/vaults" + rule.replace("<vault_id>", MISSING).rstrip("/")
        for method in methods:
            assert invoke(rest_event(method, path, body={})).status != 405, (method, path)


def test_base64_bodies_are_accepted(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults", body={"first_name": "Zoë"}, base64_body=True)
    assert response.status == 200
    decrypt = {"fields": ["first_name"], "reason": "r"}
    result = api.call("POST", f"/vaults/{response.json['id']}/decrypt", body=decrypt, base64_body=True)
    assert result.json["data"] == {"first_name": "Zoë"}


def test_body_that_is_not_utf8_is_invalid(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults", raw_body='{"first_name": "\udcff"}', base64_body=True)
    assert_error(response, 422, "ValidationError")
    assert response.json["errors"] == [
        {"loc": ["body"], "type": "utf8_invalid", "msg": "body: is not valid UTF-8"}
    ]
    assert api.items() == []


DEEP = '{"first_name": ' + "[" * 10_000 + "]" * 10_000 + "}"
LONG_INTEGER = '{"first_name": ' + "7" * 5_000 + "}"


def _body_routes(vault_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/vaults"),
        ("PATCH", f"/vaults/{vault_id}"),
        ("DELETE", f"/vaults/{vault_id}"),
        ("POST", f"/vaults/{vault_id}/decrypt"),
    ]


TOO_DEEP = "body: arrays and objects nest at most 32 deep"
TOO_LONG = "body: integers are limited to 100 digits"


@pytest.mark.parametrize(
    ("raw_body", "rule", "msg"),
    [
        (DEEP, "json_too_deep", TOO_DEEP),
        # Unclosed brackets would make the parser recurse just as deep.
        ("[" * 10_000, "json_too_deep", TOO_DEEP),
        (LONG_INTEGER, "json_number_too_long", TOO_LONG),
        ('{"delete_all": -' + "1" * 5_000 + "}", "json_number_too_long", TOO_LONG),
    ],
)
def test_hostile_json_is_a_422_not_a_500(
    api: ApiHarness, caplog: pytest.LogCaptureFixture, raw_body: str, rule: str, msg: str
) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    for method, path in _body_routes(vault_id):
        with caplog.at_level(logging.DEBUG):
            response = api.call(method, path, raw_body=raw_body)
        assert_error(response, 422, "ValidationError")
        assert response.json["errors"] == [{"loc": ["body"], "type": rule, "msg": msg}], (method, path)
    assert api.items() == before
    assert "Unhandled error" not in caplog.text
    assert "7" * 200 not in caplog.text and "1" * 200 not in caplog.text


def test_json_within_the_limits_is_validated_as_usual(api: ApiHarness) -> None:
    # 32 levels and 100 digits parse; the schema then refuses the shape, field by field.
    nested = api.call("POST", "/vaults", raw_body='{"first_name": ' + "[" * 31 + "]" * 31 + "}")
    assert_error(nested, 422, "ValidationError")
    not_a_string = [
        {"loc": ["body", "first_name"], "type": "string_type", "msg": "first_name: must be a string"}
    ]
    assert nested.json["errors"] == not_a_string
    number = api.call("POST", "/vaults", raw_body='{"first_name": ' + "9" * 100 + "}")
    assert number.json["errors"] == not_a_string
    # Brackets inside strings are text.
    text = api.call("POST", "/vaults", body={"first_name": "[" * 100})
    assert text.status == 200, text.text


def test_unsupported_content_type(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults", raw_body="<x/>", headers={"Content-Type": "application/xml"})
    assert_error(response, 415, "UnsupportedMediaType")
    assert api.items() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/vaults"),
        ("PATCH", "/vaults/{id}"),
        ("DELETE", "/vaults/{id}"),
        ("POST", "/vaults/{id}/decrypt"),
    ],
)
@pytest.mark.parametrize(
    ("content_type", "raw_body"),
    [
        ("multipart/form-data", '{"first_name": "Ann"}'),
        (
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--',
        ),
        ("application/x-www-form-urlencoded", ""),
        ("application/x-www-form-urlencoded", "first_name=Ann"),
    ],
)
def test_form_bodies_are_refused(
    api: ApiHarness, method: str, path: str, content_type: str, raw_body: str
) -> None:
    vault_id = api.create({"first_name": "Ann"})
    before = api.items()
    response = api.call(
        method, path.format(id=vault_id), raw_body=raw_body, headers={"Content-Type": content_type}
    )
    assert_error(response, 415, "UnsupportedMediaType")
    assert_secure(response)
    assert api.items() == before


def test_the_content_type_is_read_from_both_header_maps(api: ApiHarness) -> None:
    event = rest_event("POST", "/vaults", body={"first_name": "Ann"})
    event["multiValueHeaders"]["content-type"] = ["text/plain"]
    assert_error(invoke(event), 415, "UnsupportedMediaType")
    assert api.items() == []


@pytest.mark.parametrize(
    "content_type", ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/merge-patch+json"]
)
def test_json_media_types_are_case_insensitive(api: ApiHarness, content_type: str) -> None:
    event = rest_event("POST", "/vaults", body={"first_name": "Ann"})
    for headers in (event["headers"], event["multiValueHeaders"]):
        del headers["Content-Type"]
    event["headers"]["content-type"] = content_type
    event["multiValueHeaders"]["content-type"] = [content_type]
    response = invoke(event)
    assert response.status == 200, response.text


def test_a_body_without_content_type_is_read_as_json(api: ApiHarness) -> None:
    event = rest_event("POST", "/vaults", body={"first_name": "Ann"})
    for headers in (event["headers"], event["multiValueHeaders"]):
        del headers["Content-Type"]
    response = invoke(event)
    assert response.status == 200, response.text


def test_validation_errors_name_field_and_rule_only(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = api.call(
            "POST", "/vaults", body={"ssn9": "12345678x", "first_name": "Ann", "nick": "Annie"}
        )
    assert_error(response, 422, "ValidationError")
    assert response.json == {
        "statusCode": 422,
        "code": "ValidationError",
        "message": "Invalid request data",
        "errors": [
            {
                "loc": ["body", "ssn9"],
                "type": "string_pattern_mismatch",
                "msg": "ssn9: must be exactly 9 digits",
            },
            {
                "loc": ["body", "nick"],
                "type": "extra_forbidden",
                "msg": f"body: 'nick' is not a vault field; known: {', '.join(SCHEMA_FIELDS)}",
            },
        ],
    }
    for secret in ("12345678x", "Annie"):
        assert secret not in caplog.text
        assert all(secret not in str(record.__dict__) for record in caplog.records)
    (record,) = [r for r in caplog.records if r.getMessage() == "Request validation failed"]
    # The log keeps location and rule; the messages are for the client.
    logged = [{"loc": error["loc"], "type": error["type"]} for error in response.json["errors"]]
    assert record.validation_errors == logged  # type: ignore[attr-defined]


def test_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an override, the handler builds its service (and boto3 clients) from the environment."""
    with api_harness(monkeypatch) as api:
        vault_id = api.create({"first_name": "Ann"})
        app.dependency_overrides.clear()
        get_service.cache_clear()
        response = api.call("GET", f"/vaults/{vault_id}", query={"fields": "first_name,email"})
        assert (response.status, response.json) == (200, {"first_name": True, "email": False})
        assert get_service().store.table_name == api.env["TABLE_NAME"]
        assert get_service() is get_service()


def test_missing_configuration_is_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TABLE_NAME", "KEY_ARN", "VAULT_URL"):
        monkeypatch.delenv(name, raising=False)
    get_service.cache_clear()
    try:
        response = invoke(rest_event("GET", f"/vaults/{MISSING}"))
    finally:
        get_service.cache_clear()
    assert_error(response, 500, "ConfigurationError")


def test_success_bodies_are_compact_json(api: ApiHarness) -> None:
    response = api.call("POST", "/vaults", body={})
    assert response.text == json.dumps(response.json, separators=(",", ":"))
    assert response.headers["Content-Type"] == "application/json"


# -- Swagger -----------------------------------------------------------------------------


def test_swagger_ui_works_offline() -> None:
    response = invoke(rest_event("GET", "/swagger"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html"
    html = response.text
    # The swagger-ui bundle and stylesheet are inlined, nothing is fetched from a CDN.
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+stylesheet", html)
    assert "SwaggerUIBundle" in html
    assert "<style>" in html
    assert '"title": "Nitro Vault API"' in html


def test_openapi_document() -> None:
    response = invoke(rest_event("GET", "/swagger", query={"format": "json"}))
    assert response.status == 200
    document = response.json
    assert document["info"] == {
        "title": "Nitro Vault API",
        "version": "0.1.0",
        "summary": "API to securely store PII/PHI data",
        "description": "This API implements CRUD operations for the vault application",
        "license": {"name": "MIT-0", "identifier": "MIT-0"},
    }
    assert document["servers"] == [{"url": "/v1"}]
    summaries = {
        (path, method): operation["summary"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert summaries == {
        ("/vaults", "post"): "Create a vault",
        ("/vaults/{vault_id}", "get"): "Get a vault",
        ("/vaults/{vault_id}", "patch"): "Update a vault",
        ("/vaults/{vault_id}", "delete"): "Delete a vault",
        ("/vaults/{vault_id}/decrypt", "post"): "Decrypt data from a vault",
        ("/vaults/{vault_id}/audit", "get"): "Read a vault's audit log",
        ("/vaults/decrypt", "post"): "Decrypt data from several vaults",
        ("/vaults/search", "post"): "Find the vaults holding a value",
        ("/vaults/{vault_id}/rotate", "post"): "Rotate a vault's key",
    }
    rotate = document["paths"]["/vaults/{vault_id}/rotate"]["post"]
    assert set(rotate["responses"]) == {"200", "403", "404", "409", "422", "500", "502", "503", "504"}
    rotate_body = document["components"]["schemas"]["RotateBody"]
    assert rotate_body["required"] == ["reason"]
    assert rotate_body["properties"]["suite"] == {
        "type": "string",
        "enum": ["P384_SHA384_AES256GCM"],
        "description": rotate_body["properties"]["suite"]["description"],
        "title": "Suite",
    }
    search = document["paths"]["/vaults/search"]["post"]
    assert set(search["responses"]) == {"200", "403", "404", "409", "422", "500", "502", "503", "504"}
    assert document["components"]["schemas"]["SearchBody"]["properties"]["field"]["enum"] == ["ssn9", "email"]
    decrypt = document["paths"]["/vaults/{vault_id}/decrypt"]["post"]
    example = decrypt["requestBody"]["content"]["application/json"]["examples"]["decrypt"]["value"]
    assert example["reason"] == "TESTING - API test through Swagger UI"
    assert set(decrypt["responses"]) == {"200", "404", "409", "422", "500", "502", "503", "504"}
    get = document["paths"]["/vaults/{vault_id}"]["get"]
    params = {param["name"]: param for param in get["parameters"]}
    assert params["vault_id"]["schema"]["title"] == "Vault ID"
    assert params["fields"]["schema"]["title"] == "Fields to get"
    assert document["components"]["schemas"]["VaultFields"]["additionalProperties"] is False
    delete = document["paths"]["/vaults/{vault_id}"]["delete"]
    assert "names nothing to delete is refused with 422" in delete["description"]
    delete_body = document["components"]["schemas"]["DeleteBody"]
    assert delete_body["anyOf"] == [
        {"required": ["delete_all"], "properties": {"delete_all": {"const": True}}},
        {"required": ["fields"], "properties": {"fields": {"type": "array", "minItems": 1}}},
    ]
    refused = delete["responses"]["422"]["description"]
    assert "nested deeper than 32 levels" in refused and "more than 100 digits" in refused


@pytest.mark.parametrize("make", [lambda: rest_event("GET", "/swagger", query={"format": "oauth2-redirect"})])
def test_swagger_helper_pages_carry_the_headers(make: Callable[[], dict[str, Any]]) -> None:
    assert_secure(invoke(make()))


def test_storage_failure_is_a_500_with_a_stable_code(api: ApiHarness) -> None:
    vault_id = api.create({"first_name": "Ann"})
    api.dynamodb.delete_table(TableName=api.service.store.table_name)
    for response in (
        api.call("GET", f"/vaults/{vault_id}"),
        api.call("POST", "/vaults", body={"first_name": "Bob"}),
        api.call("GET", f"/vaults/{vault_id}/audit"),
    ):
        assert_error(response, 500, "StorageError")
        assert response.json["message"] == "Unable to reach the vault store"
