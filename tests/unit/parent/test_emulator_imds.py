"""The emulator's IMDSv2 service behaves like the instance metadata service the parent reads."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from emulator.aws.imds import CREDENTIALS_PATH, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, ImdsServer


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer(role="vault-role") as server:
        yield server


@pytest.fixture
def http(imds: ImdsServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=imds.endpoint, timeout=5, trust_env=False) as client:
        yield client


def token(http: httpx.Client, ttl: str = "60") -> str:
    response = http.put(TOKEN_PATH, headers={TTL_HEADER: ttl})
    assert response.status_code == 200
    return response.text


def test_binds_loopback_on_an_ephemeral_port(imds: ImdsServer) -> None:
    assert imds.host == "127.0.0.1"
    assert imds.port > 0
    assert imds.endpoint == f"http://127.0.0.1:{imds.port}"


@pytest.mark.parametrize("ttl", ["1", "300", "21600"])
def test_token_with_a_valid_ttl(http: httpx.Client, ttl: str) -> None:
    response = http.put(TOKEN_PATH, headers={TTL_HEADER: ttl})
    assert response.status_code == 200
    assert len(response.text) >= 32
    assert response.headers[TTL_HEADER] == ttl


@pytest.mark.parametrize(
    "headers", [{}, {TTL_HEADER: "0"}, {TTL_HEADER: "21601"}, {TTL_HEADER: "abc"}, {TTL_HEADER: "-5"}]
)
def test_token_without_a_valid_ttl_is_400(http: httpx.Client, headers: dict[str, str]) -> None:
    assert http.put(TOKEN_PATH, headers=headers).status_code == 400


def test_proxied_token_requests_are_forbidden(http: httpx.Client) -> None:
    response = http.put(TOKEN_PATH, headers={TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.1"})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "path", [CREDENTIALS_PATH, CREDENTIALS_PATH + "vault-role", "/latest/meta-data/instance-id"]
)
def test_gets_need_a_token(http: httpx.Client, imds: ImdsServer, path: str) -> None:
    assert http.get(path).status_code == 401
    assert http.get(path, headers={TOKEN_HEADER: "not-a-token"}).status_code == 401
    assert imds.count("unauthorized") == 2
    assert imds.count("credentials") == 0


def test_an_expired_token_is_refused(http: httpx.Client) -> None:
    short = token(http, ttl="1")
    assert http.get(CREDENTIALS_PATH, headers={TOKEN_HEADER: short}).status_code == 200
    time.sleep(1.1)
    assert http.get(CREDENTIALS_PATH, headers={TOKEN_HEADER: short}).status_code == 401


def test_role_listing_and_credentials(http: httpx.Client, imds: ImdsServer) -> None:
    headers = {TOKEN_HEADER: token(http)}
    assert http.get(CREDENTIALS_PATH, headers=headers).text == "vault-role"
    document = http.get(CREDENTIALS_PATH + "vault-role", headers=headers).json()
    assert set(document) == {
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    }
    assert document["Code"] == "Success"
    assert document["Type"] == "AWS-HMAC"
    assert document["AccessKeyId"].startswith("ASIA") and len(document["AccessKeyId"]) == 20
    assert len(document["SecretAccessKey"]) == 40
    expiration = datetime.fromisoformat(document["Expiration"])
    assert document["Expiration"].endswith("Z")
    assert timedelta(hours=5) < expiration - datetime.now(UTC) <= timedelta(hours=6)
    assert imds.counters == {"total": 3, "token": 1, "role_list": 1, "credentials": 1}


def test_credentials_stay_the_same_until_they_near_expiry(http: httpx.Client, imds: ImdsServer) -> None:
    headers = {TOKEN_HEADER: token(http)}
    first = http.get(CREDENTIALS_PATH + "vault-role", headers=headers).json()
    second = http.get(CREDENTIALS_PATH + "vault-role", headers=headers).json()
    assert first == second
    imds.rotate()
    assert (
        http.get(CREDENTIALS_PATH + "vault-role", headers=headers).json()["AccessKeyId"]
        != first["AccessKeyId"]
    )


def test_a_short_lifetime_forces_new_credentials_on_every_read(http: httpx.Client, imds: ImdsServer) -> None:
    imds.credential_lifetime = timedelta(seconds=30)
    headers = {TOKEN_HEADER: token(http)}
    documents = [http.get(CREDENTIALS_PATH + "vault-role", headers=headers).json() for _ in range(3)]
    assert len({d["AccessKeyId"] for d in documents}) == 3
    expiration = datetime.fromisoformat(documents[-1]["Expiration"])
    assert expiration - datetime.now(UTC) <= timedelta(seconds=30)


def test_a_configured_provider_and_clock() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    provided = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "s", "Token": "t"}
    with ImdsServer(role="r", credential_provider=lambda: provided, clock=lambda: now) as server:
        with httpx.Client(base_url=server.endpoint, trust_env=False) as client:
            headers = {TOKEN_HEADER: token(client)}
            document = client.get(CREDENTIALS_PATH + "r", headers=headers).json()
    assert document["AccessKeyId"] == "AKIDEXAMPLE"
    assert document["LastUpdated"] == "2025-03-01T12:00:00Z"
    assert document["Expiration"] == "2025-03-01T18:00:00Z"


def test_instance_metadata(http: httpx.Client, imds: ImdsServer) -> None:
    headers = {TOKEN_HEADER: token(http)}
    assert http.get("/latest/meta-data/instance-id", headers=headers).text == imds.instance_id
    info = http.get("/latest/meta-data/iam/info", headers=headers).json()
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"] == "arn:aws:iam::123456789012:instance-profile/vault-role"
    assert info["InstanceProfileId"].startswith("AIPA")


def test_unknown_paths_and_roles_are_404(http: httpx.Client) -> None:
    headers = {TOKEN_HEADER: token(http)}
    assert http.get(CREDENTIALS_PATH + "other-role", headers=headers).status_code == 404
    assert http.get("/latest/meta-data/nothing", headers=headers).status_code == 404
    assert http.put("/latest/other", headers={TTL_HEADER: "60"}).status_code == 404


def test_an_instance_without_a_role(http: httpx.Client, imds: ImdsServer) -> None:
    imds.role = None
    headers = {TOKEN_HEADER: token(http)}
    assert http.get(CREDENTIALS_PATH, headers=headers).status_code == 404
    assert http.get("/latest/meta-data/iam/info", headers=headers).status_code == 404


def test_other_methods_are_405(http: httpx.Client) -> None:
    assert http.post(TOKEN_PATH).status_code == 405
    assert http.delete(CREDENTIALS_PATH).status_code == 405


def test_injected_failures_come_first_and_are_counted(http: httpx.Client, imds: ImdsServer) -> None:
    imds.fail_next(2, status=503)
    assert http.put(TOKEN_PATH, headers={TTL_HEADER: "60"}).status_code == 503
    assert http.put(TOKEN_PATH, headers={TTL_HEADER: "60"}).status_code == 503
    assert http.put(TOKEN_PATH, headers={TTL_HEADER: "60"}).status_code == 200
    assert imds.count("failed") == 2
    imds.reset_counters()
    assert imds.counters == {}


def test_stop_releases_the_port() -> None:
    server = ImdsServer().start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.port
    with ImdsServer(port=port) as again:
        assert again.port == port


def test_a_bad_body_length_is_refused_without_breaking_the_server(imds: ImdsServer) -> None:
    with socket.create_connection(("127.0.0.1", imds.port), timeout=5) as raw:
        raw.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 400 Bad Request"
    with httpx.Client(base_url=imds.endpoint, trust_env=False) as client:
        assert client.put(TOKEN_PATH, headers={TTL_HEADER: "60"}).status_code == 200
        assert client.put(TOKEN_PATH, headers={TTL_HEADER: "60"}, content=b"x" * 70000).status_code == 413
