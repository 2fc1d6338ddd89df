"""The credential cache: validity window, single refresh under concurrency, failures (spec 3.4, 9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from unit.parent.fakes import TEST_CREDENTIAL
from vault.common.messages import Credential
from vault.parent.credentials import CREDENTIAL_REFRESH_BUFFER, CachedCredentials, is_valid
from vault.parent.errors import CredentialsUnavailable
from vault.parent.imds import ImdsError, RoleCredentials

pytestmark = pytest.mark.anyio

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


# -- spec 9: IMDS cache validity ---------------------------------------------------------------


def test_no_expiry_is_valid() -> None:
    assert is_valid(None, NOW)


def test_expiry_in_an_hour_is_valid() -> None:
    assert is_valid(NOW + timedelta(seconds=3600), NOW)


def test_expiry_in_30_seconds_is_inside_the_refresh_buffer() -> None:
    assert not is_valid(NOW + timedelta(seconds=30), NOW)


def test_expired_is_invalid() -> None:
    assert not is_valid(NOW - timedelta(seconds=1), NOW)


def test_expiry_in_120_seconds_is_valid() -> None:
    assert is_valid(NOW + timedelta(seconds=120), NOW)


def test_the_buffer_is_60_seconds_exclusive() -> None:
    assert CREDENTIAL_REFRESH_BUFFER == timedelta(seconds=60)
    assert not is_valid(NOW + timedelta(seconds=60), NOW)
    assert is_valid(NOW + timedelta(seconds=60, microseconds=1), NOW)


# -- the cache ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def credential(n: int) -> Credential:
    return Credential.model_validate(
        {"AccessKeyId": f"ASIA{n:016d}", "SecretAccessKey": f"s{n}", "Token": f"t{n}"}
    )


class Source:
    """Hands out credential 1, 2, 3... each valid for ``lifetime``; may be made to fail or stall."""

    def __init__(
        self, clock: Clock, lifetime: timedelta | None = timedelta(hours=1), delay: float = 0.0
    ) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.delay = delay
        self.fetches = 0
        self.failing = False

    async def fetch(self) -> RoleCredentials:
        self.fetches += 1
        await anyio.sleep(self.delay)
        if self.failing:
            raise ImdsError("IMDS unavailable after 3 attempts: timed out")
        expiration = None if self.lifetime is None else self.clock() + self.lifetime
        return RoleCredentials(credential(self.fetches), expiration)


async def test_one_fetch_per_validity_window() -> None:
    clock = Clock()
    source = Source(clock)
    cache = CachedCredentials(source, clock)
    assert await cache.get() == credential(1)
    clock.now += timedelta(minutes=58)  # expires in 2 minutes: still valid
    assert await cache.get() == credential(1)
    assert source.fetches == 1
    clock.now += timedelta(seconds=61)  # 59 s left: inside the buffer
    assert await cache.get() == credential(2)
    assert source.fetches == 2


async def test_credentials_without_expiry_are_fetched_once() -> None:
    clock = Clock()
    source = Source(clock, lifetime=None)
    cache = CachedCredentials(source, clock)
    for _ in range(5):
        clock.now += timedelta(days=30)
        assert await cache.get() == credential(1)
    assert source.fetches == 1


async def test_concurrent_callers_share_one_refresh() -> None:
    clock = Clock()
    source = Source(clock, delay=0.05)
    cache = CachedCredentials(source, clock)
    results: list[Credential] = []

    async def get() -> None:
        results.append(await cache.get())

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(get)
    assert results == [credential(1)] * 20
    assert source.fetches == 1


async def test_concurrent_callers_share_one_failure() -> None:
    clock = Clock()
    source = Source(clock, delay=0.05)
    source.failing = True
    cache = CachedCredentials(source, clock)
    failures = 0

    async def get() -> None:
        nonlocal failures
        try:
            await cache.get()
        except CredentialsUnavailable:
            failures += 1

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(get)
    assert failures == 10
    assert source.fetches == 1
    # A later request tries again.
    source.failing = False
    assert await cache.get() == credential(2)


async def test_a_failed_refresh_keeps_unexpired_credentials() -> None:
    clock = Clock()
    source = Source(clock)
    cache = CachedCredentials(source, clock)
    await cache.get()
    source.failing = True
    clock.now += timedelta(minutes=59, seconds=30)  # 30 s before expiry: refresh is due
    assert await cache.get() == credential(1)
    clock.now += timedelta(seconds=31)  # expired
    with pytest.raises(CredentialsUnavailable) as refused:
        await cache.get()
    assert refused.value.status == 500
    assert refused.value.message == "Internal Server Error"


async def test_short_lived_credentials_are_used_but_refetched_each_time() -> None:
    clock = Clock()
    source = Source(clock, lifetime=timedelta(seconds=30))
    cache = CachedCredentials(source, clock)
    assert await cache.get() == credential(1)
    assert await cache.get() == credential(2)
    assert source.fetches == 2


def test_credentials_are_redacted_in_reprs() -> None:
    for text in (repr(TEST_CREDENTIAL), str(TEST_CREDENTIAL), f"{TEST_CREDENTIAL}"):
        assert "[REDACTED]" in text
        assert TEST_CREDENTIAL.secret_access_key.get_secret_value() not in text
        assert TEST_CREDENTIAL.access_key_id.get_secret_value() not in text
    fetched = RoleCredentials(TEST_CREDENTIAL, None)
    assert TEST_CREDENTIAL.token.get_secret_value() not in repr(fetched)
