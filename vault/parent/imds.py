"""Instance-role credentials from the EC2 instance metadata service, IMDSv2 only (spec 3.4).

One fetch: ``PUT /latest/api/token`` for a session token, the role name from the
``security-credentials/`` listing when none is configured (decision D11), then the
role's credentials. A fresh HTTP client is built for every fetch, as upstream does,
so a stale connection never outlives a refresh. Transport failures, 5xx answers and
a token refused mid-fetch are retried a few times with short timeouts; anything
else (no role, unreadable credentials) fails at once. Error texts never include a
response body, which could hold a secret.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from vault.common.messages import Credential

# Names of IMDS paths and headers, not secrets.
TOKEN_PATH = "/latest/api/token"  # noqa: S105
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
TOKEN_TTL_SECONDS = 300
RETRY_DELAY = 0.1


class ImdsError(Exception):
    """No usable credentials could be obtained; the text is safe to log."""


class _Retryable(ImdsError):
    pass


@dataclass(frozen=True)
class RoleCredentials:
    credential: Credential
    #: ``None`` when IMDS gave no expiry: such credentials never need refreshing.
    expiration: datetime | None


def parse_expiration(value: object) -> datetime | None:
    """RFC 3339 (``2024-05-01T12:00:00Z``) to an aware datetime; a missing value means none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ImdsError("credential Expiration is not a string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ImdsError("credential Expiration is not an RFC 3339 time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_role_credentials(body: bytes) -> RoleCredentials:
    try:
        document = json.loads(body)
    except ValueError:
        raise ImdsError("role credentials are not JSON") from None
    if not isinstance(document, dict):
        raise ImdsError("role credentials are not a JSON object")
    code = document.get("Code", "Success")
    if code != "Success":
        raise ImdsError(f"IMDS reported credential status {str(code)[:64]!r}")
    if document.get("Token") is None:
        # Upstream treats a missing session token as an empty one.
        document["Token"] = ""
    try:
        credential = Credential.model_validate(document)
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors(include_input=False) if e["loc"])
        raise ImdsError(f"role credentials lack or mistype: {missing}") from None
    return RoleCredentials(credential, parse_expiration(document.get("Expiration")))


class ImdsClient:
    """Fetches role credentials from ``endpoint`` (``http://169.254.169.254`` on EC2)."""

    def __init__(
        self,
        endpoint: str,
        *,
        role: str | None = None,
        timeout: float = 1.0,
        attempts: int = 3,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.endpoint = endpoint.rstrip("/")
        self.role = role
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay

    async def fetch(self) -> RoleCredentials:
        last: ImdsError | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            # trust_env=False: a proxy configured for other traffic must never see IMDS requests.
            async with httpx.AsyncClient(
                base_url=self.endpoint, timeout=self.timeout, trust_env=False
            ) as client:
                try:
                    return await self._fetch(client)
                except _Retryable as exc:
                    last = exc
        raise ImdsError(f"IMDS unavailable after {self.attempts} attempts: {last}")

    async def _fetch(self, client: httpx.AsyncClient) -> RoleCredentials:
        token = (
            await self._request(client, "PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)})
        ).text
        if not token:
            raise _Retryable("IMDS returned an empty session token")
        headers = {TOKEN_HEADER: token}
        role = self.role or await self._discover_role(client, headers)
        response = await self._request(client, "GET", CREDENTIALS_PATH + quote(role, safe=""), headers)
        return parse_role_credentials(response.content)

    async def _discover_role(self, client: httpx.AsyncClient, headers: dict[str, str]) -> str:
        listing = (await self._request(client, "GET", CREDENTIALS_PATH, headers)).text
        for line in listing.splitlines():
            if line.strip():
                return line.strip()
        raise ImdsError("the instance has no IAM role")

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]
    ) -> httpx.Response:
        try:
            response = await client.request(method, path, headers=headers)
        except httpx.TimeoutException:
            raise _Retryable(f"{method} {_shown(path)} timed out") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach IMDS: {type(exc).__name__}") from None
        if response.status_code == 200:
            return response
        # 401: the session token was refused (expired or IMDS restarted); 5xx: transient.
        if response.status_code == 401 or response.status_code >= 500:
            raise _Retryable(f"IMDS answered {response.status_code} to {method} {_shown(path)}")
        raise ImdsError(f"IMDS answered {response.status_code} to {method} {_shown(path)}")


def _shown(path: str) -> str:
    return path if len(path) <= 120 else path[:120] + "..."
