"""The cached instance credentials handed to the enclave with every request (spec 3.4).

A cached credential is used while ``now + 60 s < expiration`` (no expiration: always).
Otherwise one caller refreshes it under a lock; callers that queued behind it re-check
the cache first (double-checked locking), so a burst of requests costs one IMDS fetch.
If that fetch fails, the callers that waited share its failure instead of each trying
again, and a credential that is inside the refresh margin but not yet expired is still
used rather than failing requests it can serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from vault.common.messages import Credential
from vault.parent.errors import CredentialsUnavailable
from vault.parent.imds import ImdsError, RoleCredentials

log = logging.getLogger(__name__)

CREDENTIAL_REFRESH_BUFFER = timedelta(seconds=60)


def is_valid(expiration: datetime | None, now: datetime) -> bool:
    """Whether a credential expiring at ``expiration`` may still be used at ``now``."""
    return expiration is None or now + CREDENTIAL_REFRESH_BUFFER < expiration


def utc_now() -> datetime:
    return datetime.now(UTC)


class CredentialSource(Protocol):
    async def fetch(self) -> RoleCredentials:
        """Fetch fresh credentials; raise :class:`ImdsError`."""
        ...


class CredentialProvider(Protocol):
    async def get(self) -> Credential:
        """Credentials valid for the next request; raise :class:`CredentialsUnavailable`."""
        ...


class CachedCredentials:
    def __init__(self, source: CredentialSource, clock: Callable[[], datetime] = utc_now) -> None:
        self._source = source
        self._clock = clock
        self._cached: RoleCredentials | None = None
        self._lock = asyncio.Lock()
        # Finished fetch attempts; tells a waiter whether one ended while it queued.
        self._attempts = 0
        self._last_error: ImdsError | None = None

    def _fresh(self) -> Credential | None:
        cached = self._cached
        if cached is not None and is_valid(cached.expiration, self._clock()):
            return cached.credential
        return None

    def _unexpired(self) -> Credential | None:
        cached = self._cached
        if cached is not None and (cached.expiration is None or self._clock() < cached.expiration):
            return cached.credential
        return None

    async def get(self) -> Credential:
        credential = self._fresh()
        if credential is not None:
            return credential
        seen = self._attempts
        async with self._lock:
            credential = self._fresh()
            if credential is not None:
                return credential
            if self._attempts == seen or self._last_error is None:
                await self._refresh()
                credential = self._fresh()
                if credential is not None:
                    return credential
            credential = self._unexpired()
            if credential is None:
                raise CredentialsUnavailable()
            if self._last_error is not None:
                log.warning("using cached credentials close to expiry: the refresh failed")
            return credential

    async def _refresh(self) -> None:
        try:
            fresh = await self._source.fetch()
        except ImdsError as exc:
            self._last_error = exc
            log.error("credential refresh failed", extra={"fields": {"error": str(exc)}})
            return
        finally:
            # Counted when the attempt ends: callers that arrive while it runs must see it
            # as one that happened during their wait.
            self._attempts += 1
        self._last_error = None
        self._cached = fresh
        expiration = fresh.expiration.isoformat() if fresh.expiration else None
        log.info("credentials refreshed", extra={"fields": {"expiration": expiration}})
        if not is_valid(fresh.expiration, self._clock()):
            log.warning(
                "IMDS returned credentials inside the refresh margin",
                extra={"fields": {"expiration": expiration}},
            )
