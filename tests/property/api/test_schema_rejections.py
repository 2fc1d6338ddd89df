"""Property: a request that breaks the schema gets the documented 4xx and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unit.api.events import ApiResponse
from unit.api.harness import ApiHarness, api_harness

from property.api.strategies import (
    VALID_BODIES,
    broken_vault_body,
    field_name_spellings,
    hostile_json,
    malformed_json,
)
from vault.api.headers import SECURITY_HEADERS
from vault.api.models import SCHEMA_FIELDS

# The harness is shared by all examples of a test: refused requests must leave it as it was.
SHARED = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def api_with_vault(monkeypatch: pytest.MonkeyPatch) -> Any:
    with api_harness(monkeypatch) as api:
        vault_id = api.create({"first_name": "Ann", "ssn9": "123456789"})
        yield api, vault_id


def assert_refused(api: ApiHarness, before: list[dict[str, Any]], response: ApiResponse) -> None:
    assert response.status == 422, response.text
    body = response.json
    assert set(body) == {"statusCode", "code", "message", "errors"}
    assert (body["statusCode"], body["code"], body["message"]) == (
        422,
        "ValidationError",
        "Invalid request data",
    )
    assert body["errors"]
    for error in body["errors"]:
        assert set(error) == {"loc", "type", "msg"}
        assert error["loc"][0] == "body"
        assert isinstance(error["msg"], str) and error["msg"]
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert api.items() == before, "a refused request changed the table"
    assert api.parent.sent == []


@SHARED
@given(case=broken_vault_body())
def test_create_refuses_schema_breaking_bodies(api_with_vault: Any, case: tuple[str, str]) -> None:
    api, _ = api_with_vault
    before = api.items()
    assert_refused(api, before, api.call("POST", "/vaults", raw_body=case[1]))


@SHARED
@given(case=broken_vault_body())
def test_update_refuses_schema_breaking_bodies(api_with_vault: Any, case: tuple[str, str]) -> None:
    api, vault_id = api_with_vault
    before = api.items()
    assert_refused(api, before, api.call("PATCH", f"/vaults/{vault_id}", raw_body=case[1]))


_NOT_A_FIELD = st.text(max_size=12).filter(lambda name: name.strip().lower() not in SCHEMA_FIELDS)
_JSON_SCALARS = st.one_of(st.none(), st.integers(), st.booleans(), st.text(max_size=5))


@st.composite
def broken_decrypt_body(draw: st.DrawFn) -> str:
    body: dict[str, Any] = {
        "fields": [
            draw(field_name_spellings(name)) for name in draw(st.lists(st.sampled_from(SCHEMA_FIELDS)))
        ],
        "reason": draw(st.text(max_size=20)),
    }
    kind = draw(st.sampled_from(["unknown field", "extra key", "missing", "wrong type", "null", "malformed"]))
    if kind == "unknown field":
        body["fields"].insert(draw(st.integers(0, len(body["fields"]))), draw(_NOT_A_FIELD))
    elif kind == "extra key":
        body[
            draw(
                st.text(min_size=1, max_size=8).filter(lambda k: k not in ("fields", "reason", "expressions"))
            )
        ] = 1
    elif kind == "missing":
        del body[draw(st.sampled_from(["fields", "reason"]))]
    elif kind == "wrong type":
        key = draw(st.sampled_from(["fields", "reason", "expressions"]))
        body[key] = draw(
            _JSON_SCALARS.filter(lambda v: v is not None and not (key == "reason" and isinstance(v, str)))
        )
    elif kind == "null":
        body[draw(st.sampled_from(["fields", "reason", "expressions"]))] = None
    else:
        return draw(malformed_json(body))
    return json.dumps(body)


@SHARED
@given(raw=broken_decrypt_body())
def test_decrypt_refuses_schema_breaking_bodies(api_with_vault: Any, raw: str) -> None:
    api, vault_id = api_with_vault
    before = api.items()
    assert_refused(api, before, api.call("POST", f"/vaults/{vault_id}/decrypt", raw_body=raw))


@st.composite
def broken_delete_body(draw: st.DrawFn) -> str:
    kinds = ["unknown field", "extra key", "not bool", "not list", "names nothing", "malformed"]
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown field":
        names = [draw(field_name_spellings(name)) for name in draw(st.lists(st.sampled_from(SCHEMA_FIELDS)))]
        names.insert(draw(st.integers(0, len(names))), draw(_NOT_A_FIELD))
        return json.dumps({"fields": names})
    if kind == "extra key":
        key = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in ("fields", "delete_all")))
        return json.dumps({"delete_all": True, key: True})
    if kind == "not bool":
        return json.dumps(
            {"delete_all": draw(st.one_of(st.integers(), st.text(max_size=5), st.lists(st.booleans())))}
        )
    if kind == "not list":
        return json.dumps({"fields": draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()))})
    if kind == "names nothing":
        # Upstream answered 200 to these and deleted nothing, with no audit record.
        body: dict[str, Any] = {}
        if draw(st.booleans()):
            body["delete_all"] = draw(st.sampled_from([False, None]))
        if draw(st.booleans()):
            body["fields"] = draw(st.sampled_from([[], None]))
        return json.dumps(body)
    return draw(malformed_json({"delete_all": True}))


@SHARED
@given(raw=broken_delete_body())
def test_delete_refuses_schema_breaking_bodies(api_with_vault: Any, raw: str) -> None:
    api, vault_id = api_with_vault
    before = api.items()
    assert_refused(api, before, api.call("DELETE", f"/vaults/{vault_id}", raw_body=raw))


@SHARED
@given(value=st.text(max_size=8).filter(lambda value: value not in ("true", "false")))
def test_forget_refuses_every_value_but_true_and_false(api_with_vault: Any, value: str) -> None:
    api, vault_id = api_with_vault
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", query={"forget": value})
    assert response.status == 422, response.text
    assert [(error["loc"], error["type"]) for error in response.json["errors"]] == [
        (["query", "forget"], "literal_error")
    ]
    assert api.items() == before


@SHARED
@given(
    body=st.sampled_from(
        [{"delete_all": True}, {"fields": ["email"]}, {"delete_all": True, "fields": ["dob"]}]
    )
)
def test_forget_refuses_a_body_naming_what_to_delete(api_with_vault: Any, body: dict[str, Any]) -> None:
    api, vault_id = api_with_vault
    before = api.items()
    response = api.call("DELETE", f"/vaults/{vault_id}", query={"forget": "true"}, body=body)
    assert_refused(api, before, response)
    assert [(error["loc"], error["type"]) for error in response.json["errors"]] == [
        (["body"], "forget_with_body")
    ]


@SHARED
@given(data=st.data(), route=st.sampled_from(sorted(VALID_BODIES)))
def test_over_deep_or_over_long_json_is_refused_on_every_route(
    api_with_vault: Any, data: st.DataObject, route: str
) -> None:
    api, vault_id = api_with_vault
    rule, raw = data.draw(hostile_json(VALID_BODIES[route]))
    method, path = {
        "create": ("POST", "/vaults"),
        "update": ("PATCH", f"/vaults/{vault_id}"),
        "delete": ("DELETE", f"/vaults/{vault_id}"),
        "decrypt": ("POST", f"/vaults/{vault_id}/decrypt"),
    }[route]
    before = api.items()
    response = api.call(method, path, raw_body=raw)
    assert_refused(api, before, response)
    assert [(error["loc"], error["type"]) for error in response.json["errors"]] == [(["body"], rule)]
