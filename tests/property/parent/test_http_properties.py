"""Whatever a client sends, the parent answers in its JSON shape or with the right result, never a crash.

An independent oracle (written from spec 3.3, not from the parent's code) says which
answer each body deserves: 422 for the wrong shape, 400 for a broken limit, otherwise
200 with the enclave's reply (the fake enclave reverses each value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from unit.parent.fakes import FakeEnclave, FixedCredentials, echo, make_services, short_tempdir

from vault.parent.config import ParentConfig
from vault.parent.server import ParentServer

REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
REQUIRED = ("vault_id", "region", "fields", "suite_id", "encrypted_private_key")
OPTIONAL = ("expressions", "encoding")


@pytest.fixture(scope="module")
def parent() -> Iterator[httpx.Client]:
    with short_tempdir() as directory, FakeEnclave(directory, behaviour=echo):
        services = make_services(directory, credentials=FixedCredentials())
        with ParentServer(ParentConfig(port=0), services) as server:
            with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
                yield client


def is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def expected_outcome(document: Any) -> int:
    """The status spec 3.3 asks for, decided without the parent's code."""
    if not isinstance(document, dict):
        return 422
    if any(not isinstance(document.get(key), str) for key in REQUIRED if key != "fields"):
        return 422
    if not is_str_map(document.get("fields")):
        return 422
    expressions, encoding = document.get("expressions"), document.get("encoding")
    if expressions is not None and not is_str_map(expressions):
        return 422
    if encoding is not None and not isinstance(encoding, str):
        return 422
    valid = (
        1 <= len(document["vault_id"]) <= 256
        and len(document["region"]) <= 64
        and REGION.fullmatch(document["region"]) is not None
        and 1 <= len(document["suite_id"]) <= 1024
        and 1 <= len(document["encrypted_private_key"]) <= 8192
        and len(document["fields"]) <= 100
        and (expressions is None or len(expressions) <= 100)
        and (encoding is None or len(encoding) <= 32)
    )
    return 200 if valid else 400


def post_json(client: httpx.Client, document: Any) -> httpx.Response:
    # Serialised here: httpx's ``json=None`` would send no body at all.
    return client.post("/decrypt", content=json.dumps(document), headers={"Content-Type": "application/json"})


def check_answer(response: httpx.Response, document: Any) -> None:
    expected = expected_outcome(document)
    event(f"status {expected}")
    assert response.status_code == expected, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if expected == 200:
        assert body == {"fields": {k: v[::-1] for k, v in document["fields"].items()}, "errors": []}
        assert list(body["fields"]) == sorted(body["fields"])
    else:
        assert set(body) == {"code", "message"}
        assert body["code"] == expected
        assert isinstance(body["message"], str) and body["message"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

regions = st.one_of(
    st.from_regex(REGION, fullmatch=True),
    st.sampled_from(["us-east-1", "us-gov-west-1", "US-EAST-1", "us-east", "invalid-region", "", "--"]),
    st.text(alphabet="abcdefgz019-", max_size=70),
)
string_maps = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=6)


@st.composite
def near_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Bodies close to a decrypt request: each key present or not, mostly well typed."""
    generators: dict[str, st.SearchStrategy[Any]] = {
        "vault_id": st.text(max_size=8) | st.text(min_size=250, max_size=260),
        "region": regions,
        "fields": string_maps,
        "suite_id": st.text(max_size=8),
        "encrypted_private_key": st.text(max_size=8),
        "expressions": st.none() | string_maps,
        "encoding": st.none() | st.text(max_size=40),
    }
    document: dict[str, Any] = {}
    for key, generator in generators.items():
        presence = draw(st.sampled_from(["typed"] * 10 + ["absent", "any json"]))
        if presence == "typed":
            document[key] = draw(generator)
        elif presence == "any json":
            document[key] = draw(json_values)
    document.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return document


@given(document=json_values)
def test_any_json_value_gets_the_answer_it_deserves(parent: httpx.Client, document: Any) -> None:
    check_answer(post_json(parent, document), document)


@given(document=near_requests())
def test_near_requests_get_the_answer_they_deserve(parent: httpx.Client, document: dict[str, Any]) -> None:
    check_answer(post_json(parent, document), document)


@given(
    fields=st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), min_size=95, max_size=105)
)
def test_the_field_count_limit(parent: httpx.Client, fields: dict[str, str]) -> None:
    document = {
        "vault_id": "v",
        "region": "eu-west-1",
        "fields": fields,
        "suite_id": "s",
        "encrypted_private_key": "k",
    }
    check_answer(post_json(parent, document), document)


@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parent(parent: httpx.Client, body: bytes) -> None:
    response = parent.post("/decrypt", content=body, headers={"Content-Type": "application/json"})
    try:
        document = json.loads(body)
    except ValueError:
        # Not JSON for Python either (the parent may accept a few more, e.g. NaN, as the wrong shape).
        assert response.status_code in (400, 422)
    else:
        assert response.status_code == expected_outcome(document)
    body_json = response.json()
    if response.status_code != 200:
        assert body_json["code"] == response.status_code and body_json["message"]


@given(content_type=st.text(max_size=40).filter(lambda t: "\n" not in t and "\r" not in t))
def test_only_json_media_types_are_read(parent: httpx.Client, content_type: str) -> None:
    document = {
        "vault_id": "v",
        "region": "eu-west-1",
        "fields": {},
        "suite_id": "s",
        "encrypted_private_key": "k",
    }
    try:
        response = parent.post(
            "/decrypt", content=json.dumps(document), headers={"Content-Type": content_type}
        )
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not a header value an HTTP client can send
    media_type = content_type.split(";")[0].strip().lower()
    is_json = media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )
    assert response.status_code == (200 if is_json else 415)
