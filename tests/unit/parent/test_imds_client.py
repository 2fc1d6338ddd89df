"""The parent's IMDSv2 client against the emulator's IMDS (spec 3.4, decision D11)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from emulator.aws.imds import ImdsServer
from vault.parent.imds import ImdsClient, ImdsError, parse_expiration, parse_role_credentials

pytestmark = pytest.mark.anyio

PROVIDED = {
    "AccessKeyId": "ASIAPROVIDEDKEY00001",
    "SecretAccessKey": "provided-secret-value",
    "Token": "provided-token",
}


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer(role="vault-role", credential_provider=lambda: PROVIDED) as server:
        yield server


def fast_client(imds: ImdsServer, **options: object) -> ImdsClient:
    settings: dict[str, object] = {"timeout": 0.5, "attempts": 3, "retry_delay": 0.01}
    settings.update(options)
    return ImdsClient(imds.endpoint, **settings)  # type: ignore[arg-type]


async def test_fetch_with_a_configured_role(imds: ImdsServer) -> None:
    fetched = await fast_client(imds, role="vault-role").fetch()
    assert fetched.credential.to_wire() == PROVIDED
    assert fetched.expiration == imds.current_expiration
    assert imds.counters == {"total": 2, "token": 1, "credentials": 1}


async def test_fetch_discovers_the_role_when_none_is_configured(imds: ImdsServer) -> None:
    fetched = await fast_client(imds).fetch()
    assert fetched.credential.to_wire() == PROVIDED
    assert imds.count("role_list") == 1
    assert imds.count("credentials") == 1


async def test_an_instance_without_a_role_fails_at_once(imds: ImdsServer) -> None:
    imds.role = None
    with pytest.raises(ImdsError, match="404"):
        await fast_client(imds).fetch()
    assert imds.count("token") == 1


async def test_an_unknown_role_is_not_retried(imds: ImdsServer) -> None:
    with pytest.raises(ImdsError, match="404"):
        await fast_client(imds, role="someone-else").fetch()
    assert imds.count("token") == 1


async def test_role_names_cannot_escape_the_credentials_path(imds: ImdsServer) -> None:
    with pytest.raises(ImdsError):
        await fast_client(imds, role="../../instance-id").fetch()
    assert imds.count("instance_id") == 0


async def test_transient_failures_are_retried(imds: ImdsServer) -> None:
    imds.fail_next(2, status=500)
    fetched = await fast_client(imds, role="vault-role").fetch()
    assert fetched.credential.to_wire() == PROVIDED
    assert imds.count("failed") == 2


async def test_persistent_failures_give_up_after_the_attempts(imds: ImdsServer) -> None:
    imds.fail_next(10, status=503)
    with pytest.raises(ImdsError, match="after 3 attempts"):
        await fast_client(imds, role="vault-role").fetch()
    assert imds.count("failed") == 3


async def test_a_slow_imds_times_out_quickly(imds: ImdsServer) -> None:
    imds.response_delay = 1.0
    started = time.monotonic()
    with pytest.raises(ImdsError, match="timed out"):
        await fast_client(imds, timeout=0.1, attempts=2).fetch()
    assert time.monotonic() - started < 1.0


async def test_an_unreachable_endpoint_fails_within_the_attempts() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ImdsError, match="cannot reach IMDS"):
        await ImdsClient(f"http://127.0.0.1:{port}", timeout=0.2, attempts=2, retry_delay=0.01).fetch()
    assert time.monotonic() - started < 1.0


async def test_errors_never_carry_credential_values(imds: ImdsServer) -> None:
    imds.credential_provider = lambda: {"AccessKeyId": "ASIAX", "SecretAccessKey": ["not", "a", "string"]}  # type: ignore[assignment,return-value]
    with pytest.raises(ImdsError) as refused:
        await fast_client(imds, role="vault-role").fetch()
    assert "SecretAccessKey" in str(refused.value)
    assert "ASIAX" not in str(refused.value)


def test_a_missing_session_token_is_empty() -> None:
    parsed = parse_role_credentials(json.dumps({"AccessKeyId": "a", "SecretAccessKey": "s"}).encode())
    assert parsed.credential.to_wire() == {"AccessKeyId": "a", "SecretAccessKey": "s", "Token": ""}
    assert parsed.expiration is None


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"Code": "Failure", "AccessKeyId": "a", "SecretAccessKey": "s"}).encode(), "Failure"),
        (json.dumps({"SecretAccessKey": "very-secret"}).encode(), "AccessKeyId"),
        (
            json.dumps({"AccessKeyId": "a", "SecretAccessKey": "s", "Expiration": "tomorrow"}).encode(),
            "RFC 3339",
        ),
        (json.dumps({"AccessKeyId": "a", "SecretAccessKey": "s", "Expiration": 5}).encode(), "not a string"),
    ],
)
def test_unusable_credential_documents(document: bytes, fragment: str) -> None:
    with pytest.raises(ImdsError) as refused:
        parse_role_credentials(document)
    assert fragment in str(refused.value)
    assert "very-secret" not in str(refused.value)


def test_expiration_formats() -> None:
    assert parse_expiration("2025-05-01T12:00:00Z") == datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert parse_expiration("2025-05-01T12:00:00+00:00") == datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert parse_expiration("2025-05-01T12:00:00") == datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert parse_expiration(None) is None
    assert parse_expiration("") is None


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError):
        ImdsClient("http://127.0.0.1:1", attempts=0)
