"""Schema rules of spec 1.3 and the decrypt/delete bodies (decisions D6, D7)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from vault.api.models import SCHEMA_FIELDS, DecryptBody, DeleteBody, VaultFields


def _errors(model: type[Any], data: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as excinfo:
        model.model_validate(data)
    return [(error["loc"], error["type"]) for error in excinfo.value.errors()]


def test_schema_fields_in_upstream_order() -> None:
    assert SCHEMA_FIELDS == tuple(VaultFields.model_fields)
    assert SCHEMA_FIELDS.index("ssn9") < SCHEMA_FIELDS.index("ssn4")


def test_strings_are_stripped_before_checks() -> None:
    fields = VaultFields.model_validate(
        {"ssn9": " 123456789\t", "phone_number": "\n+15554443333 ", "first_name": "  Ann  ", "email": "   "}
    )
    assert fields.provided() == {
        "email": "",
        "first_name": "Ann",
        "phone_number": "+15554443333",
        "ssn9": "123456789",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"nickname": "x"}, [(("nickname",), "extra_forbidden")]),
        ({"ssn9": None}, [(("ssn9",), "null_not_allowed")]),
        ({"email": None}, [(("email",), "null_not_allowed")]),
        ({"ssn9": 123456789}, [(("ssn9",), "string_type")]),
        ({"ssn9": "12345678"}, [(("ssn9",), "string_too_short")]),
        ({"ssn9": "12345678a"}, [(("ssn9",), "string_pattern_mismatch")]),
        ({"ssn4": "123"}, [(("ssn4",), "string_too_short")]),
        ({"phone_number": "5554443333"}, [(("phone_number",), "string_pattern_mismatch")]),
        ({"phone_number": "+05554443333"}, [(("phone_number",), "string_pattern_mismatch")]),
        ({"phone_number": "+1234567890123456"}, [(("phone_number",), "string_pattern_mismatch")]),
        ({"dob": "2000/07/04"}, [(("dob",), "string_pattern_mismatch")]),
        ({"country": "USA"}, [(("country",), "string_too_long")]),
        ({"postal_code": "12345#"}, [(("postal_code",), "string_pattern_mismatch")]),
        ({"postal_code": "1" * 1025}, [(("postal_code",), "string_too_long")]),
        ({"city": "x" * 1025}, [(("city",), "string_too_long")]),
        ({"first_name": ["Ann"]}, [(("first_name",), "string_type")]),
        ({"first_name": "\ud800"}, [(("first_name",), "string_unicode")]),
        ([], [((), "model_type")]),
    ],
)
def test_schema_violations(data: Any, expected: list[tuple[tuple[Any, ...], str]]) -> None:
    assert _errors(VaultFields, data) == expected


def test_limits_are_inclusive() -> None:
    fields = VaultFields.model_validate(
        {"city": "x" * 1024, "postal_code": "A1 -" * 256, "dob": "0000-99-99"}
    )
    assert len(fields.provided()["city"]) == 1024


def test_repr_never_shows_values() -> None:
    fields = VaultFields.model_validate({"first_name": "Zebulon", "ssn9": "987654321"})
    for text in (repr(fields), str(fields), f"{fields}"):
        assert "Zebulon" not in text
        assert "987654321" not in text
        assert "first_name" in text


def test_openapi_schema_documents_strings_not_nulls() -> None:
    properties = VaultFields.model_json_schema()["properties"]
    assert set(properties) == set(SCHEMA_FIELDS)
    for prop in properties.values():
        assert prop["type"] == "string"
        assert "anyOf" not in prop
        assert "default" not in prop
    assert properties["ssn9"]["pattern"] == r"^\d{9}$"


def test_decrypt_fields_are_normalised_and_deduplicated() -> None:
    body = DecryptBody.model_validate({"fields": [" First_Name ", "SSN9", "first_name"], "reason": "audit"})
    assert body.fields == ["first_name", "ssn9"]
    assert body.expressions == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"fields": ["_sk"], "reason": "r"}, [(("fields", 0), "vault_field")]),
        ({"fields": ["ssn9", "pk"], "reason": "r"}, [(("fields", 1), "vault_field")]),
        ({"fields": ["nickname"], "reason": "r"}, [(("fields", 0), "vault_field")]),
        ({"reason": "r"}, [(("fields",), "missing")]),
        ({"fields": []}, [(("reason",), "missing")]),
        ({"fields": [], "reason": None}, [(("reason",), "string_type")]),
        ({"fields": [], "reason": "r", "extra": 1}, [(("extra",), "extra_forbidden")]),
        ({"fields": "ssn9", "reason": "r"}, [(("fields",), "list_type")]),
        ({"fields": [], "reason": "r", "expressions": None}, [(("expressions",), "dict_type")]),
        (
            {"fields": [], "reason": "r", "expressions": {"a": "x" * 10241}},
            [(("expressions", "a"), "expression_too_long")],
        ),
        (
            {"fields": [], "reason": "r", "expressions": {"a": "é" * 5121}},
            [(("expressions", "a"), "expression_too_long")],
        ),
        ({"fields": ["ssn9"] * 101, "reason": "r"}, [(("fields",), "too_long")]),
        ({"fields": [], "reason": "r" * 1025}, [(("reason",), "string_too_long")]),
    ],
)
def test_decrypt_body_violations(data: Any, expected: list[tuple[tuple[Any, ...], str]]) -> None:
    assert _errors(DecryptBody, data) == expected


def test_decrypt_expression_limit_is_in_bytes_and_inclusive() -> None:
    body = DecryptBody.model_validate({"fields": [], "reason": "", "expressions": {"a": "é" * 5120}})
    assert list(body.expressions) == ["a"]
    assert "é" not in repr(body)


def test_delete_body() -> None:
    assert DeleteBody.model_validate({"delete_all": True}).fields is None
    assert DeleteBody.model_validate({"delete_all": True, "fields": None}).delete_all is True
    assert DeleteBody.model_validate({"delete_all": None, "fields": ["email"]}).delete_all is None
    assert DeleteBody.model_validate({"fields": [" SSN9", "ssn9", "Email"]}).fields == ["ssn9", "email"]
    assert _errors(DeleteBody, {"fields": ["_pk"]}) == [(("fields", 0), "vault_field")]
    assert _errors(DeleteBody, {"delete_all": "yes"}) == [(("delete_all",), "bool_type")]
    assert _errors(DeleteBody, {"delete_all": 1}) == [(("delete_all",), "bool_type")]
    assert _errors(DeleteBody, {"everything": True}) == [(("everything",), "extra_forbidden")]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"fields": []},
        {"delete_all": False},
        {"delete_all": None, "fields": None},
        {"delete_all": False, "fields": []},
    ],
)
def test_a_delete_body_must_name_something(data: dict[str, Any]) -> None:
    assert _errors(DeleteBody, data) == [((), "nothing_to_delete")]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"fields": []},
        {"delete_all": None, "fields": None},
        {"delete_all": False},
        {"delete_all": True},
        {"delete_all": True, "fields": []},
        {"fields": ["email"]},
        {"delete_all": False, "fields": ["first_name"]},
        {"delete_all": None, "fields": ["city", "dob"]},
    ],
)
def test_the_documented_delete_schema_matches_the_model(data: dict[str, Any]) -> None:
    # Schemathesis generates "valid" bodies from the document: it must say what the model says.
    schema = DeleteBody.model_json_schema()
    try:
        DeleteBody.model_validate(data)
        accepted = True
    except ValidationError:
        accepted = False
    assert Draft202012Validator(schema).is_valid(data) is accepted
