"""moto's loopback port answers only requests signed with this run's backend secret.

moto checks no signature: anyone who can connect to its port could call ``Decrypt`` on
the vault key without the KMS front's policy and attestation checks, or dump and reset
its state through ``/moto-api``. The daemon's own services call moto's application in
process and never pass here; what reaches the port (tests, the demo's audit reader, the
dashboard) signs with the backend credentials from the state file, which is readable by
its owner only (mode 0600). So a request must carry a valid SigV4 signature, for any
service and region, by the backend's access key with this run's random secret. The
signature rules are the emulator's own verifier's (the body hashed as received, at most
five minutes of clock skew).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from emulator.aws.sigv4 import Principal, SigV4Failure, SigV4Verifier

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: Bodies above this are refused before they are read (moto's own requests are far smaller).
MAX_BODY = 64 * 1024 * 1024
_SCOPE_PREFIX = "Credential="


def _headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (key[5:].replace("_", "-").lower(), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers.append((name, str(environ[key])))
    return headers


def _scope(headers: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(region, service) named by the Authorization header's credential scope."""
    authorization = next((value for name, value in headers if name == "authorization"), "")
    start = authorization.find(_SCOPE_PREFIX)
    if start < 0:
        return None
    credential = authorization[start + len(_SCOPE_PREFIX) :].split(",", 1)[0].strip()
    parts = credential.split("/")
    if len(parts) != 5:
        return None
    return parts[2], parts[3]


class SignedRequestsOnly:
    """WSGI middleware: refuse (403) every request not signed with the backend's secret."""

    def __init__(self, app: WsgiApp, *, access_key_id: str, secret_access_key: str, account_id: str) -> None:
        self._app = app
        self._principal = Principal(access_key_id, secret_access_key, f"arn:aws:iam::{account_id}:root")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return self._refuse(start_response, SigV4Failure(400, "Invalid Content-Length."))
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = _headers(environ)
        scope = _scope(headers)
        if scope is None:
            return self._refuse(start_response, SigV4Failure(403, "Missing Authentication Token"))
        region, service = scope
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/")
        path, _, query = raw.partition("?")
        verdict = SigV4Verifier([self._principal], region, service).verify(
            str(environ.get("REQUEST_METHOD", "GET")), path, query, headers, body
        )
        if isinstance(verdict, SigV4Failure):
            return self._refuse(start_response, verdict)
        return self._app(environ, start_response)

    @staticmethod
    def _refuse(start_response: Callable[..., Any], failure: SigV4Failure) -> Iterable[bytes]:
        body = json.dumps({"__type": "UnrecognizedClientException", "message": failure.message}).encode()
        start_response(
            f"{failure.status} {'Forbidden' if failure.status == 403 else 'Bad Request'}",
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(body))),
                ("x-amzn-ErrorType", "UnrecognizedClientException"),
            ],
        )
        return [body]
