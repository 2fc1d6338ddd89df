"""HTTP behaviour of the parent: routes, limits and the mapping of every failure (spec 3.2, 3.3, 9)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from unit.parent.fakes import (
    ENCLAVE_CID,
    FAST_TIMEOUTS,
    TEST_CREDENTIAL,
    FailingCredentials,
    FakeEnclave,
    FixedCredentials,
    asgi_client,
    assert_error_body,
    busy,
    busy_without_code,
    close_after_request,
    close_at_once,
    decrypt_body,
    drip,
    global_failure,
    make_services,
    nan_value,
    not_json,
    oversized_header,
    replay,
    silent,
    silent_before_reading,
    truncated_body,
    truncated_header,
    wrong_shape,
)
from vault.parent.app import ParentServices, is_json_media_type
from vault.parent.registry import StaticRegistry

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}


def no_enclaves(uds_dir: Path, **kwargs: Any) -> ParentServices:
    return make_services(uds_dir, (), **kwargs)


# -- spec 9: HTTP integration with no enclaves ---------------------------------------------------


async def test_health(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_enclaves_empty(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.get("/enclaves")
    assert response.status_code == 200
    assert response.json() == []


async def test_decrypt_without_enclaves_is_404_before_credentials(uds_dir: Path) -> None:
    credentials = FixedCredentials()
    async with asgi_client(no_enclaves(uds_dir, credentials=credentials)) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "No enclaves found"}
    assert credentials.calls == 0


async def test_malformed_json_is_400(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=b'{"vault_id": ', headers=JSON_HEADERS)
    assert_error_body(response, 400)


async def test_empty_vault_id_is_400_with_code_400(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", json=decrypt_body(vault_id=""))
    body = assert_error_body(response, 400)
    assert "vault_id" in body["message"]


async def test_invalid_region_is_400(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", json=decrypt_body(region="invalid-region"))
    body = assert_error_body(response, 400)
    assert "region" in body["message"]


async def test_a_body_of_one_mib_plus_one_byte_is_413(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=b"x" * (MIB + 1), headers=JSON_HEADERS)
    body = assert_error_body(response, 413)
    assert "1048576" in body["message"]


async def test_a_body_of_exactly_one_mib_is_read(uds_dir: Path) -> None:
    document = json.dumps(decrypt_body()).encode()
    padded = document + b" " * (MIB - len(document))
    assert len(padded) == MIB
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=padded, headers=JSON_HEADERS)
    assert response.json() == {"code": 404, "message": "No enclaves found"}


async def test_an_oversized_declared_length_is_refused_on_any_route(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.request("GET", "/health", content=b"y" * (MIB + 10))
    assert_error_body(response, 413)


async def test_a_chunked_body_is_refused_while_it_streams(uds_dir: Path) -> None:
    sent = 0
    chunk = b" " * (64 * 1024)

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(160):  # 10 MiB if it were all read
            sent += 1
            yield chunk

    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=body(), headers=JSON_HEADERS)
    assert "content-length" not in response.request.headers
    assert_error_body(response, 413)
    # Refused at the first chunk past 1 MiB (the 17th), not after the whole body.
    assert sent == 17


# -- media type, shape, routing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json", "application/jsonx"]
)
async def test_decrypt_requires_json_media_type(uds_dir: Path, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=json.dumps(decrypt_body()), headers=headers)
    assert_error_body(response, 415)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"],
)
async def test_json_media_types_are_accepted(uds_dir: Path, content_type: str) -> None:
    assert is_json_media_type(content_type)
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post(
            "/decrypt", content=json.dumps(decrypt_body()), headers={"Content-Type": content_type}
        )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        decrypt_body(fields={"ssn9": None}),
        decrypt_body(fields={"ssn9": 5}),
        decrypt_body(vault_id=None),
        {"vault_id": "v"},
        [],
        "text",
        42,
    ],
)
async def test_shape_errors_are_422(uds_dir: Path, body: object) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/decrypt", content=json.dumps(body), headers=JSON_HEADERS)
    assert_error_body(response, 422)


async def test_count_limits_over_http(uds_dir: Path) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        at_limit = await client.post("/decrypt", json=decrypt_body(fields={f"f{i}": "v" for i in range(100)}))
        over = await client.post(
            "/decrypt", json=decrypt_body(expressions={f"e{i}": "1" for i in range(101)})
        )
    assert at_limit.status_code == 404
    assert "expressions" in assert_error_body(over, 400)["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/decrypt", "POST"),
        ("POST", "/health", "GET"),
        ("DELETE", "/enclaves", "GET"),
        ("PUT", "/decrypt", "POST"),
    ],
)
async def test_wrong_method_is_405(uds_dir: Path, method: str, path: str, allowed: str) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.request(method, path)
    assert_error_body(response, 405)
    assert allowed in response.headers["allow"]


@pytest.mark.parametrize("path", ["/", "/creds", "/decrypt/extra", "/healthz"])
async def test_unknown_path_is_404(uds_dir: Path, path: str) -> None:
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.get(path)
    assert_error_body(response, 404)


async def test_post_enclaves_is_not_routed(uds_dir: Path) -> None:
    # Upstream's launch endpoint exists in code but is not routed; so it stays here.
    async with asgi_client(no_enclaves(uds_dir)) as client:
        response = await client.post("/enclaves", json={})
    assert_error_body(response, 405)


async def test_a_request_slower_than_the_timeout_is_408(uds_dir: Path) -> None:
    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"vault_id": '
        await anyio.sleep(5)
        yield b'"v"}'

    started = time.monotonic()
    async with asgi_client(no_enclaves(uds_dir), request_timeout=0.3) as client:
        response = await client.post("/decrypt", content=slow_body(), headers=JSON_HEADERS)
    assert_error_body(response, 408)
    assert time.monotonic() - started < 3


async def test_credential_failure_is_a_generic_500(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    enclave = start_enclave()
    async with asgi_client(make_services(uds_dir, credentials=FailingCredentials())) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    assert response.status_code == 500
    assert response.json() == {"code": 500, "message": "Internal Server Error"}
    assert enclave.connections == 0


async def test_an_unexpected_crash_is_a_json_500(uds_dir: Path) -> None:
    class BrokenRegistry(StaticRegistry):
        def enclaves(self) -> Any:
            raise RuntimeError("bug")

    services = make_services(uds_dir)
    services.registry = BrokenRegistry()
    async with asgi_client(services, raise_app_exceptions=False) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    assert response.json() == {"code": 500, "message": "Internal Server Error"}


# -- forwarding to an enclave -------------------------------------------------------------------


async def test_decrypt_forwards_request_and_credential_and_sorts_fields(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    enclave = start_enclave()
    body = decrypt_body(expressions={"ssn4": "ssn9.substring(5)"}, encoding="2")
    async with asgi_client(make_services(uds_dir)) as client:
        response = await client.post("/decrypt", json=body)
    assert response.status_code == 200
    # The fake enclave answers each value reversed.
    expected = {name: value[::-1] for name, value in body["fields"].items()}
    assert response.json() == {"fields": expected, "errors": []}
    assert list(response.json()["fields"]) == ["dob", "first_name", "ssn9"]
    assert enclave.messages == [{"credential": TEST_CREDENTIAL.to_wire(), "request": body}]


async def test_a_global_enclave_failure_passes_through_without_fields(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    start_enclave(global_failure)
    async with asgi_client(make_services(uds_dir)) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    assert response.status_code == 200
    assert response.json() == {
        "errors": ["failed to call KMS: AccessDeniedException"],
        "code": "KeyDecryptFailed",
    }


async def test_requests_are_spread_over_the_enclaves(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave]
) -> None:
    first, second = start_enclave(cid=16), start_enclave(cid=17)
    async with asgi_client(make_services(uds_dir, (16, 17))) as client:
        for _ in range(40):
            assert (await client.post("/decrypt", json=decrypt_body())).status_code == 200
    # Uniformly random: both are chosen unless something is wrong (chance 2**-39).
    assert first.connections > 0 and second.connections > 0
    assert first.connections + second.connections == 40


async def test_enclaves_lists_descriptions_in_pascal_case(uds_dir: Path) -> None:
    async with asgi_client(make_services(uds_dir, (16, 17))) as client:
        response = await client.get("/enclaves")
    described = response.json()
    assert [d["EnclaveCID"] for d in described] == [16, 17]
    assert {"EnclaveName", "EnclaveID", "State", "Flags", "MemoryMiB", "NumberOfCPUs"} <= set(described[0])


FAILURES = [
    (busy, 503, "is busy"),
    (busy_without_code, 503, "is busy"),
    (close_at_once, 503, "closed the connection"),
    (close_after_request, 503, "closed the connection without replying"),
    (truncated_header, 503, "truncated reply"),
    (truncated_body, 503, "truncated reply"),
    # Alive but silent after taking the request (e.g. waiting on a slow KMS): a timeout.
    (silent, 504, "did not answer in time (it accepted the request; it may be waiting on KMS)"),
    (silent_before_reading, 504, "did not answer in time"),
    (drip, 504, "did not answer in time"),
    (not_json, 503, "unreadable reply"),
    (wrong_shape, 503, "wrong shape"),
    (nan_value, 503, "not valid JSON"),
    (oversized_header, 503, "oversized reply"),
    (replay(b"\x02\x00\x00\x00\x00\x00\x00\x00[]"), 503, "wrong shape"),
]


@pytest.mark.parametrize(("behaviour", "status", "fragment"), FAILURES, ids=[f[0].__name__ for f in FAILURES])
async def test_enclave_failures_are_503_or_504_within_the_timeout(
    uds_dir: Path, start_enclave: Callable[..., FakeEnclave], behaviour: Any, status: int, fragment: str
) -> None:
    start_enclave(behaviour)
    started = time.monotonic()
    async with asgi_client(make_services(uds_dir)) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    elapsed = time.monotonic() - started
    body = assert_error_body(response, status)
    assert fragment in body["message"]
    assert f"enclave {ENCLAVE_CID}" in body["message"]
    assert elapsed < FAST_TIMEOUTS.total + 1.0


async def test_an_enclave_that_is_not_listening_is_503_at_once(uds_dir: Path) -> None:
    started = time.monotonic()
    async with asgi_client(make_services(uds_dir)) as client:
        response = await client.post("/decrypt", json=decrypt_body())
    assert "not accepting connections" in assert_error_body(response, 503)["message"]
    assert time.monotonic() - started < 1.0
