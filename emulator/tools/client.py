"""A small typed client for the vault's REST API (routes of upstream spec 1.1).

Used by the demo, the pytest plugin and the end-to-end tests. It speaks to any
deployment of the API: the emulator's gateway or a deployed stage URL (optionally
signing requests with SigV4, as the deployed API requires under decision D15).

The API's audit route (``GET /vaults/{id}/audit``, an addition to upstream) is read
with :meth:`VaultClient.audit` and :meth:`VaultClient.audit_trail`; :class:`AuditReader`
reads the same records straight from the table, which is what an operator with table
access would do.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth

from vault.infra.table import log_partition

DEFAULT_TIMEOUT = 30.0
#: ``https://{api id}.execute-api.{region}.amazonaws.com/...``: the region is in the host name.
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com")
#: Headers a SigV4 signature of a requests request covers (besides Host and the X-Amz-* it adds):
#: transport headers that a proxy may rewrite stay unsigned.
_SIGNED_HEADERS = frozenset({"content-type", "accept"})


class VaultApiError(Exception):
    """A non-2xx answer; ``code`` is the API's stable error code when it sent one."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        self.method = method
        self.path = path
        message = body.get("message") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        self.code: str | None = code if isinstance(code, str) else None
        self.message: str = message if isinstance(message, str) else str(body)
        label = f" {self.code}" if self.code else ""
        super().__init__(f"{method} {path} -> {status}{label}: {self.message}")


@dataclass(frozen=True)
class DecryptResult:
    data: dict[str, Any]
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AuditEntry:
    """One record of ``GET /vaults/{id}/audit``."""

    event: str
    #: RFC 3339, UTC, microseconds.
    timestamp: str
    reason: str | None
    fields: list[str]
    #: ``Success``, ``PartialSuccess`` or a failed decrypt's error code; ``None`` on old records.
    outcome: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        return cls(
            event=str(data["event"]),
            timestamp=str(data["timestamp"]),
            reason=data.get("reason"),
            fields=list(data.get("fields") or []),
            outcome=data.get("outcome"),
        )


@dataclass(frozen=True)
class AuditPage:
    """One page of the audit route: newest first; ``next_token`` is ``None`` on the last page."""

    events: list[AuditEntry]
    next_token: str | None


@dataclass(frozen=True)
class SigV4Signer:
    """Signs requests like ``aws-sigv4`` clients of an IAM-authorized API Gateway."""

    access_key_id: str
    #: Kept out of ``repr`` so that test reports and logs never show them.
    secret_access_key: str = field(repr=False)
    region: str
    session_token: str | None = field(default=None, repr=False)

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        # botocore adds ~0.2 s of imports (measured); only signing clients pay for it.
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest  # botocore, as above
        from botocore.credentials import Credentials  # botocore, as above

        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        credentials = Credentials(self.access_key_id, self.secret_access_key, self.session_token)
        SigV4Auth(credentials, "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    @classmethod
    def from_environment(cls, url: str, environ: Mapping[str, str] | None = None) -> SigV4Signer | None:
        """A signer for ``url`` with the AWS credentials of the environment, or ``None``.

        ``VAULT_API_AUTH`` chooses: ``sigv4`` signs (and fails without credentials),
        ``none`` never signs; unset, requests are signed whenever credentials resolve
        (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, or
        botocore's other sources: ``AWS_PROFILE``, SSO, container and instance roles).
        The region is ``VAULT_API_REGION``, else the one in an ``execute-api`` host
        name, else ``AWS_REGION``/``AWS_DEFAULT_REGION``.
        """
        env = os.environ if environ is None else environ
        mode = env.get("VAULT_API_AUTH", "").strip().lower()
        if mode not in ("", "sigv4", "none"):
            raise ValueError(f"VAULT_API_AUTH must be sigv4 or none, not {mode!r}")
        if mode == "none":
            return None
        # As in sign(): botocore only when credentials are to be resolved.
        import botocore.session

        access_key = env.get("AWS_ACCESS_KEY_ID")
        secret_key = env.get("AWS_SECRET_ACCESS_KEY")
        token = env.get("AWS_SESSION_TOKEN")
        if not (access_key and secret_key) and environ is None:
            resolved = botocore.session.Session().get_credentials()
            if resolved is not None:
                frozen = resolved.get_frozen_credentials()
                access_key, secret_key, token = frozen.access_key, frozen.secret_key, frozen.token
        if not (access_key and secret_key):
            if mode == "sigv4":
                raise ValueError("VAULT_API_AUTH=sigv4 but no AWS credentials were found")
            return None
        host = urlsplit(url).hostname or ""
        match = _EXECUTE_API_HOST.match(host)
        region = (
            env.get("VAULT_API_REGION")
            or (match["region"] if match else None)
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION")
        )
        if not region:
            raise ValueError(f"no region for signing requests to {host}: set VAULT_API_REGION or AWS_REGION")
        return cls(access_key, secret_key, region, token or None)

    def requests_auth(self) -> SigV4RequestsAuth:
        """This signer as a ``requests`` auth object (for sessions that other tools drive)."""
        return SigV4RequestsAuth(self)


class SigV4RequestsAuth(requests.auth.AuthBase):
    """Signs each prepared ``requests`` request with a :class:`SigV4Signer`."""

    def __init__(self, signer: SigV4Signer) -> None:
        self.signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes):
            raise TypeError("SigV4 signing needs the whole body (bytes or str), not a stream")
        headers = {
            k: v.decode("latin-1") if isinstance(v, bytes) else v
            for k, v in request.headers.items()
            if k.lower() in _SIGNED_HEADERS
        }
        signed = self.signer.sign(str(request.method), str(request.url), body, headers)
        for name, value in signed.items():
            if name.lower() not in _SIGNED_HEADERS:
                request.headers[name] = value
        return request


class VaultClient:
    """``base_url`` is the stage URL, e.g. ``http://127.0.0.1:7450/v1``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        signer: SigV4Signer | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.signer = signer
        self.session = session or requests.Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- raw access --------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> requests.Response:
        """Send one request; return the response whatever its status."""
        url = self.base_url + path
        prepared = requests.Request(method, url, params=params).prepare()
        body = b"" if json_body is None else json.dumps(json_body).encode()
        headers = {"Accept": "application/json" if expect_json else "*/*"}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        if self.signer is not None:
            headers = self.signer.sign(method, str(prepared.url), body, headers)
        return self.session.request(
            method, str(prepared.url), data=body or None, headers=headers, timeout=self.timeout
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if not 200 <= response.status_code < 300:
            raise VaultApiError(response.status_code, body, method, path)
        return body

    # -- routes ------------------------------------------------------------------------

    def create(self, fields: Mapping[str, str]) -> str:
        """POST /vaults → the new vault id."""
        body = self._call("POST", "/vaults", json_body=dict(fields))
        return str(body["id"])

    def get(self, vault_id: str, fields: Iterable[str] = ()) -> dict[str, bool]:
        """GET /vaults/{id}?fields=... → which of ``fields`` the vault holds."""
        names = ",".join(fields)
        params = {"fields": names} if names else None
        return dict(self._call("GET", f"/vaults/{vault_id}", params=params))

    def update(self, vault_id: str, fields: Mapping[str, str]) -> None:
        """PATCH /vaults/{id}."""
        self._call("PATCH", f"/vaults/{vault_id}", json_body=dict(fields))

    def delete_fields(self, vault_id: str, fields: Sequence[str]) -> None:
        """DELETE /vaults/{id} removing ``fields``."""
        self._call("DELETE", f"/vaults/{vault_id}", json_body={"fields": list(fields)})

    def delete(self, vault_id: str) -> None:
        """DELETE /vaults/{id} removing the whole vault."""
        self._call("DELETE", f"/vaults/{vault_id}", json_body={"delete_all": True})

    def decrypt(
        self,
        vault_id: str,
        fields: Sequence[str],
        reason: str,
        expressions: Mapping[str, str] | None = None,
    ) -> DecryptResult:
        """POST /vaults/{id}/decrypt."""
        payload: dict[str, Any] = {"fields": list(fields), "reason": reason}
        if expressions:
            payload["expressions"] = dict(expressions)
        body = self._call("POST", f"/vaults/{vault_id}/decrypt", json_body=payload)
        return DecryptResult(data=dict(body.get("data") or {}), errors=list(body.get("errors") or []))

    def rotate(self, vault_id: str, reason: str, suite: str | None = None) -> str:
        """POST /vaults/{id}/rotate → the suite the vault's fields are now sealed with."""
        payload: dict[str, Any] = {"reason": reason}
        if suite is not None:
            payload["suite"] = suite
        body = self._call("POST", f"/vaults/{vault_id}/rotate", json_body=payload)
        return str(body["suite"])

    def decrypt_batch(self, vaults: Sequence[Mapping[str, Any]], reason: str) -> list[dict[str, Any]]:
        """POST /vaults/decrypt → one result per vault (``{id, data, errors}`` or ``{id, error}``)."""
        payload = {"reason": reason, "vaults": [dict(vault) for vault in vaults]}
        body = self._call("POST", "/vaults/decrypt", json_body=payload)
        return [dict(result) for result in body["results"]]

    def audit(self, vault_id: str, *, limit: int | None = None, next_token: str | None = None) -> AuditPage:
        """GET /vaults/{id}/audit → one page of the vault's audit records, newest first."""
        params: dict[str, str] = {}
        if limit is not None:
            params["limit"] = str(limit)
        if next_token is not None:
            params["next_token"] = next_token
        body = self._call("GET", f"/vaults/{vault_id}/audit", params=params or None)
        return AuditPage(
            events=[AuditEntry.from_json(event) for event in body.get("events") or []],
            next_token=body.get("next_token"),
        )

    def audit_trail(self, vault_id: str, *, page_size: int = 100, max_pages: int = 1000) -> list[AuditEntry]:
        """Every audit record of the vault through the audit route, **oldest first**."""
        events: list[AuditEntry] = []
        token: str | None = None
        for _ in range(max_pages):  # bounded pagination
            page = self.audit(vault_id, limit=page_size, next_token=token)
            events.extend(page.events)
            token = page.next_token
            if token is None:
                return list(reversed(events))
        raise RuntimeError(f"the audit trail of {vault_id} has more than {max_pages} pages")

    def openapi(self) -> dict[str, Any]:
        """GET /swagger?format=json → the OpenAPI document."""
        return dict(self._call("GET", "/swagger", params={"format": "json"}))


@dataclass(frozen=True)
class AuditEvent:
    event: str
    timestamp_us: int
    reason: str | None
    fields: list[str]


class AuditReader:
    """Reads a vault's audit items (``pk = LOG##<vault id>``, spec 1.5) from the table."""

    def __init__(
        self,
        *,
        table_name: str,
        endpoint_url: str | None,
        region: str,
        aws_access_key_id: str,
        aws_secret_access_key: str,
    ) -> None:
        # boto3 adds ~0.4 s of imports (measured); only the audit reader needs it.
        import boto3

        self.table_name = table_name
        self._client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
        )

    def events(self, vault_id: str) -> list[AuditEvent]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": log_partition(vault_id)}},
            "ConsistentRead": True,
        }
        for _ in range(1000):  # bounded pagination
            page = self._client.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        events = [
            AuditEvent(
                event=item.get("_e", {}).get("S", "?"),
                timestamp_us=int(item.get("_ct", {}).get("N") or item["sk"]["S"]),
                reason=item.get("_r", {}).get("S"),
                fields=[entry.get("S", "") for entry in item.get("_f", {}).get("L", [])],
            )
            for item in items
        ]
        return sorted(events, key=lambda e: e.timestamp_us)
