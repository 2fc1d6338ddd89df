"""Decrypt request parsing and validation (spec 3.3 and the model tests of spec 9)."""

from __future__ import annotations

import json

import pytest

from unit.parent.fakes import decrypt_body
from vault.parent.errors import MalformedJson, UnprocessableRequest, ValidationFailed
from vault.parent.validation import is_valid_region, parse_decrypt_request

VALID_REGIONS = [
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "ap-southeast-1",
    "ap-northeast-2",
    "me-south-1",
    "sa-east-1",
    "us-gov-west-1",
]
INVALID_REGIONS = [
    "US-EAST-1",
    "useast1",
    "us-east",
    "usa-east-1",
    "u-east-1",
    "us-east1-1",
    "",
    "--",
    "invalid-region",
    "invalid",
    "us--1",
    "us-east-",
    "us-éast-1",
    "us-east-\uff11",  # a full-width digit is not an ASCII digit
    "us-" + "a" * 60 + "-1",
]


def parse(**overrides: object) -> object:
    return parse_decrypt_request(json.dumps(decrypt_body(**overrides)).encode())


@pytest.mark.parametrize("region", VALID_REGIONS)
def test_valid_regions(region: str) -> None:
    assert is_valid_region(region)
    parse(region=region)


@pytest.mark.parametrize("region", INVALID_REGIONS)
def test_invalid_regions(region: str) -> None:
    assert not is_valid_region(region)
    with pytest.raises(ValidationFailed, match="region"):
        parse(region=region)


def test_region_length_limit_is_64() -> None:
    assert is_valid_region("us-" + "a" * 58 + "-1")  # 63 characters
    assert is_valid_region("us-" + "a" * 59 + "-1")  # 64
    assert not is_valid_region("us-" + "a" * 60 + "-1")  # 65


@pytest.mark.parametrize(
    ("field", "ok", "too_long"),
    [
        ("vault_id", 256, 257),
        ("suite_id", 1024, 1025),
        ("encrypted_private_key", 8192, 8193),
    ],
)
def test_required_string_lengths(field: str, ok: int, too_long: int) -> None:
    parse(**{field: "a" * ok})
    parse(**{field: "a"})
    for bad in ("", "a" * too_long):
        with pytest.raises(ValidationFailed) as refused:
            parse(**{field: bad})
        assert field in refused.value.message


def test_lengths_count_characters_not_bytes() -> None:
    parse(vault_id="é" * 256)
    with pytest.raises(ValidationFailed):
        parse(vault_id="é" * 257)


def test_encoding_is_optional_and_at_most_32_characters() -> None:
    assert parse().encoding is None  # type: ignore[attr-defined]
    parse(encoding="2")
    parse(encoding="e" * 32)
    parse(encoding="")
    with pytest.raises(ValidationFailed, match="encoding"):
        parse(encoding="e" * 33)


@pytest.mark.parametrize("name", ["fields", "expressions"])
def test_count_limits_at_100(name: str) -> None:
    parse(**{name: {f"k{i}": "v" for i in range(100)}})
    with pytest.raises(ValidationFailed, match=f"{name} must have at most 100"):
        parse(**{name: {f"k{i}": "v" for i in range(101)}})


def test_expressions_are_accepted() -> None:
    request = parse(expressions={"ssn4": "ssn9.substring(5)", "name": "first_name.upper()"})
    assert request.expressions == {"ssn4": "ssn9.substring(5)", "name": "first_name.upper()"}  # type: ignore[attr-defined]
    assert parse(expressions=None).expressions is None  # type: ignore[attr-defined]


def test_empty_fields_are_allowed() -> None:
    assert parse(fields={}).fields == {}  # type: ignore[attr-defined]


def test_unknown_keys_are_ignored() -> None:
    assert parse(extra_key=[1, 2]).vault_id == "v_2f4Yw0ZsNqk9"  # type: ignore[attr-defined]


def test_every_broken_rule_is_reported() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse(vault_id="", region="x", suite_id="")
    message = refused.value.message
    assert "vault_id" in message and "region" in message and "suite_id" in message


@pytest.mark.parametrize(
    "body", [b"", b"{", b"{'a': 1}", b"\xff\xfe", b'{"vault_id": "\\ud800"}', b"[" * 10000]
)
def test_malformed_json(body: bytes) -> None:
    with pytest.raises(MalformedJson) as refused:
        parse_decrypt_request(body)
    assert refused.value.status == 400
    assert refused.value.message


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (decrypt_body(fields={"ssn9": None}), "fields.ssn9"),
        (decrypt_body(fields={"ssn9": 123456789}), "fields.ssn9"),
        (decrypt_body(fields=["ssn9"]), "fields"),
        (decrypt_body(vault_id=7), "vault_id"),
        (decrypt_body(expressions={"a": None}), "expressions.a"),
        (decrypt_body(encoding=2), "encoding"),
        ({k: v for k, v in decrypt_body().items() if k != "region"}, "region"),
        ([decrypt_body()], "body"),
        ("a string", "body"),
        (None, "body"),
    ],
)
def test_wrong_shapes_are_unprocessable(body: object, location: str) -> None:
    with pytest.raises(UnprocessableRequest) as refused:
        parse_decrypt_request(json.dumps(body).encode())
    assert refused.value.status == 422
    assert location in refused.value.message


def test_shape_errors_never_quote_values() -> None:
    with pytest.raises(UnprocessableRequest) as refused:
        parse_decrypt_request(
            json.dumps(decrypt_body(fields={"ssn9": 987654321}, vault_id=["SECRET-ID"])).encode()
        )
    assert "987654321" not in refused.value.message
    assert "SECRET-ID" not in refused.value.message


def test_validation_errors_never_quote_values() -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse(region="NOT-A-REGION-9999", vault_id="x" * 300)
    assert "NOT-A-REGION" not in refused.value.message
    assert "x" * 20 not in refused.value.message


def test_the_number_of_reported_shape_errors_is_bounded() -> None:
    with pytest.raises(UnprocessableRequest) as refused:
        parse_decrypt_request(json.dumps(decrypt_body(fields={f"f{i}": i for i in range(500)})).encode())
    assert refused.value.message.endswith("and 495 more")
    assert len(refused.value.message) < 1000
