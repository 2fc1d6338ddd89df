"""SigV4 verification for the emulator's API gateway (decision D15).

The deployed API uses IAM authorization: API Gateway accepts a request only if it is
signed (``Authorization: AWS4-HMAC-SHA256 ...``) by a known principal. The emulator
knows a small set of test principals (access key id → secret, ARN). Verification
recomputes the signature from the request as received, following the SigV4 rules for
non-S3 services (path normalised and URI-encoded once more, query sorted, signed
headers as named by the client).

The payload hash in the canonical request is always the SHA-256 of the body as received,
never the client's ``x-amz-content-sha256``: trusting that header would let a captured
request be replayed with another body under the original signature. A request that sends
the header with any other value -- ``UNSIGNED-PAYLOAD``, a ``STREAMING-*`` marker, another
body's hash -- is refused. ``X-Amz-Date`` may be at most five minutes from the verifier's
clock in either direction, with AWS's wording for each side.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from calendar import timegm
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import gmtime, strftime, strptime, time
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
#: How far ``X-Amz-Date`` may be from the verifier's clock, either way (AWS: five minutes).
MAX_CLOCK_SKEW = 300.0
_MINUTES = int(MAX_CLOCK_SKEW // 60)
CONTENT_SHA256_HEADER = "x-amz-content-sha256"
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Principal:
    access_key_id: str
    secret_access_key: str
    arn: str

    @property
    def account_id(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class SigV4Failure:
    """Why a request was refused; ``message`` is API Gateway's own wording."""

    status: int
    message: str


class SigV4Verifier:
    def __init__(self, principals: Sequence[Principal], region: str, service: str = SERVICE) -> None:
        self.principals = {p.access_key_id: p for p in principals}
        self.region = region
        self.service = service

    def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        now: float | None = None,
    ) -> Principal | SigV4Failure:
        lowered: dict[str, list[str]] = {}
        for name, value in headers:
            lowered.setdefault(name.lower(), []).append(value)
        authorization = (lowered.get("authorization") or [""])[0].strip()
        if not authorization:
            return SigV4Failure(403, "Missing Authentication Token")
        match = _AUTH.match(authorization)
        if match is None:
            return SigV4Failure(
                403, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'."
            )
        parts = match["credential"].split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            return SigV4Failure(403, "Credential should be scoped to a valid region.")
        access_key, date, region, service, _ = parts
        if region != self.region or service != self.service:
            return SigV4Failure(403, f"Credential should be scoped to correct service: '{self.service}'.")
        principal = self.principals.get(access_key)
        if principal is None:
            return SigV4Failure(403, "The security token included in the request is invalid.")
        amz_date = (lowered.get("x-amz-date") or [""])[0]
        try:
            signed_at = timegm(strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            return SigV4Failure(
                403, "Authorization header requires existence of either a 'X-Amz-Date' header."
            )
        if amz_date[:8] != date:
            return SigV4Failure(
                403, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"
            )
        current = time() if now is None else now
        skew = _clock_skew(amz_date, signed_at, current)
        if skew is not None:
            return skew
        signed_headers = match["signed"].split(";")
        if "host" not in signed_headers or any(h not in lowered for h in signed_headers):
            return SigV4Failure(
                403, "The request signature we calculated does not match the signature you provided."
            )
        declared = lowered.get(CONTENT_SHA256_HEADER)
        if declared is not None and (
            len(declared) != 1 or declared[0].strip() != hashlib.sha256(body).hexdigest()
        ):
            return SigV4Failure(
                403, "The provided 'x-amz-content-sha256' header does not match what was computed."
            )
        scope = f"{date}/{region}/{service}/aws4_request"
        key = signing_key(principal.secret_access_key, date, region, service)
        # Clients differ on re-encoding query characters they sent unencoded (botocore signs
        # the query as sent); accept a signature over either form.
        for raw_query_form in (False, True):
            canonical = canonical_request(
                method, raw_path, raw_query, lowered, signed_headers, body, raw_query_form=raw_query_form
            )
            string_to_sign = "\n".join(
                [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
            )
            expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, match["signature"]):
                return principal
        return SigV4Failure(
            403,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )


def _stamp(moment: float) -> str:
    return strftime("%Y%m%dT%H%M%SZ", gmtime(moment))


def _clock_skew(amz_date: str, signed_at: float, current: float) -> SigV4Failure | None:
    """AWS's refusal of a date too far in the past or in the future, else ``None``."""
    if signed_at < current - MAX_CLOCK_SKEW:
        return SigV4Failure(
            403,
            f"Signature expired: {amz_date} is now earlier than "
            f"{_stamp(current - MAX_CLOCK_SKEW)} ({_stamp(current)} - {_MINUTES} min.)",
        )
    if signed_at > current + MAX_CLOCK_SKEW:
        return SigV4Failure(
            403,
            f"Signature not yet current: {amz_date} is still later than "
            f"{_stamp(current + MAX_CLOCK_SKEW)} ({_stamp(current)} + {_MINUTES} min.)",
        )
    return None


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _normalise_path(path: str) -> str:
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalised = "/" + "/".join(segments)
    if path.endswith("/") and normalised != "/":
        normalised += "/"
    return normalised


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, list[str]],
    signed_headers: Sequence[str],
    body: bytes,
    *,
    raw_query_form: bool = False,
) -> str:
    # Non-S3 services sign the path as the client sent it, URI-encoded once more.
    path = quote(_normalise_path(raw_path or "/"), safe="/~")
    if raw_query_form:
        pairs = sorted(tuple(p.partition("=")[::2]) for p in raw_query.split("&") if p)
    else:
        pairs = sorted(
            (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
            for k, v in parse_qsl(raw_query, keep_blank_values=True)
        )
    query = "&".join(f"{k}={v}" for k, v in pairs)
    header_lines = "".join(
        f"{name}:{','.join(' '.join(v.split()) for v in headers[name])}\n" for name in signed_headers
    )
    # The body as received, whatever the client declares (see the module docstring).
    payload_hash = hashlib.sha256(body).hexdigest()
    return "\n".join([method, path, query, header_lines, ";".join(signed_headers), payload_hash])
