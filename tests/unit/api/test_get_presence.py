"""GET /vaults/{id}: without ``fields`` an existence check answering ``{}``, as upstream does (spec 1.7).

The whole presence map is one query away (every field named), and the OpenAPI document
says both.
"""

from __future__ import annotations

import json

from unit.api.events import invoke, rest_event
from unit.api.harness import ApiHarness
from vault.api.models import SCHEMA_FIELDS
from vault.api.routes import ALL_FIELDS_QUERY

MISSING = "v_2hRK9u2DOzmAPMhdVNt9qlJ3UvL"
STORED = {"first_name": "Zq7Ann", "ssn9": "987654321", "city": "Zq7Town"}


def test_without_fields_a_vault_holding_fields_answers_an_empty_object(api: ApiHarness) -> None:
    vault_id = api.create(STORED)
    for query in (None, {"fields": ""}, {"fields": " , "}, {"fields": "nope,_pk"}):
        response = api.call("GET", f"/vaults/{vault_id}", query=query)
        assert (response.status, response.json) == (200, {}), query


def test_without_fields_a_missing_vault_is_not_found(api: ApiHarness) -> None:
    response = api.call("GET", f"/vaults/{MISSING}")
    assert (response.status, response.json["code"]) == (404, "VaultNotFound")


def test_naming_every_field_gives_the_whole_presence_map_without_values(api: ApiHarness) -> None:
    vault_id = api.create(STORED)
    response = api.call("GET", f"/vaults/{vault_id}", query={"fields": ALL_FIELDS_QUERY})
    assert response.status == 200
    # ssn4 is derived from ssn9 on create.
    present = {"first_name", "ssn9", "ssn4", "city"}
    assert list(response.json.items()) == [(name, name in present) for name in SCHEMA_FIELDS]
    for value in (*STORED.values(), "4321"):
        assert value not in response.text


def test_the_whole_map_fits_the_query_limit() -> None:
    assert ALL_FIELDS_QUERY == ",".join(SCHEMA_FIELDS)
    assert len(ALL_FIELDS_QUERY) <= 1024


def test_the_openapi_document_explains_the_empty_answer() -> None:
    document = json.loads(invoke(rest_event("GET", "/swagger", query={"format": "json"})).text)
    get = document["paths"]["/vaults/{vault_id}"]["get"]
    assert "the answer is `{}`" in get["description"]
    assert f"`?fields={ALL_FIELDS_QUERY}`" in get["description"]
    assert "`{}` without `fields`" in get["responses"]["200"]["description"]
    (fields,) = [param for param in get["parameters"] if param["name"] == "fields"]
    assert "Omitted: the answer is `{}`" in fields["description"]
