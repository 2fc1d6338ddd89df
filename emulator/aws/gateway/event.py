"""API Gateway REST (v1) Lambda proxy integration: request → event, result → response.

Mirrors what API Gateway sends for a ``/{proxy+}`` resource with method ``ANY``:
``path`` keeps the client's percent-encoding while ``pathParameters`` and query
string values are decoded; a header or query parameter given several times appears
with its last value in the single-value map and with all values in the multi-value
map; both maps are ``null`` when empty. A body is base64-encoded (and
``isBase64Encoded`` true) when its media type is one of the API's binary media types
or it is not UTF-8 text.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

RESOURCE = "/{proxy+}"
_RESULT_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    #: The request target's path exactly as sent (percent-encoding kept), stage included.
    raw_path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class EventContext:
    stage: str
    account_id: str
    api_id: str
    domain_name: str
    binary_media_types: Sequence[str] = ()
    #: requestContext.identity additions for a SigV4-authenticated caller.
    identity: Mapping[str, str | None] = field(default_factory=dict)


class MalformedResult(ValueError):
    """The handler's return value is not a valid proxy integration response."""


def _multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _is_binary(content_type: str | None, body: bytes, binary_media_types: Sequence[str]) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type and any(fnmatch.fnmatch(media_type, pattern.lower()) for pattern in binary_media_types):
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def build_event(
    request: HttpRequest, stage_path: str, context: EventContext, request_id: str
) -> dict[str, Any]:
    """The proxy event for ``request``; ``stage_path`` is the path after ``/<stage>`` (starts with ``/``)."""
    headers, multi_headers = _multi(list(request.headers))
    query, multi_query = _multi(parse_qsl(request.raw_query, keep_blank_values=True))
    content_type = next((v for k, v in request.headers if k.lower() == "content-type"), None)
    body: str | None
    is_base64 = False
    if not request.body:
        body = None
    elif _is_binary(content_type, request.body, context.binary_media_types):
        body = base64.b64encode(request.body).decode("ascii")
        is_base64 = True
    else:
        body = request.body.decode("utf-8")
    user_agent = next((v for k, v in request.headers if k.lower() == "user-agent"), None)
    now = time.time()
    identity: dict[str, str | None] = {
        "cognitoIdentityPoolId": None,
        "accountId": None,
        "cognitoIdentityId": None,
        "caller": None,
        "sourceIp": request.source_ip,
        "principalOrgId": None,
        "accessKey": None,
        "cognitoAuthenticationType": None,
        "cognitoAuthenticationProvider": None,
        "userArn": None,
        "userAgent": user_agent,
        "user": None,
    }
    identity.update(context.identity)
    return {
        "resource": RESOURCE,
        "path": stage_path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": {"proxy": unquote(stage_path[1:])},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "proxy",
            "resourcePath": RESOURCE,
            "httpMethod": request.method,
            "extendedRequestId": request_id[:16],
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/{context.stage}{stage_path}",
            "accountId": context.account_id,
            "protocol": "HTTP/1.1",
            "stage": context.stage,
            "domainPrefix": context.domain_name.split(".", 1)[0],
            "requestTimeEpoch": int(now * 1000),
            "requestId": request_id,
            "identity": identity,
            "domainName": context.domain_name,
            "apiId": context.api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def new_request_id() -> str:
    return str(uuid.uuid4())


def interpret_result(result: Any) -> HttpResponse:
    """Turn a handler's return value into an HTTP response, or raise :class:`MalformedResult`."""
    if not isinstance(result, Mapping):
        raise MalformedResult("the result is not a JSON object")
    unknown = set(result) - _RESULT_KEYS
    if unknown:
        raise MalformedResult(f"unexpected keys {sorted(unknown)}")
    status = result.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedResult("statusCode is missing or not an HTTP status")
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping):
        raise MalformedResult("headers must be objects")
    for name, value in single.items():
        if not isinstance(name, str) or isinstance(value, (Mapping, list)):
            raise MalformedResult("header values must be scalars")
        if name not in multi:
            headers.append((name, _header_value(value)))
    for name, values in multi.items():
        if not isinstance(name, str) or not isinstance(values, list):
            raise MalformedResult("multiValueHeaders values must be lists")
        headers.extend((name, _header_value(value)) for value in values)
    body = result.get("body")
    is_base64 = result.get("isBase64Encoded", False)
    if not isinstance(is_base64, bool):
        raise MalformedResult("isBase64Encoded must be a boolean")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise MalformedResult("body must be a string")
    elif is_base64:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedResult("body is not valid base64") from exc
    else:
        data = body.encode("utf-8")
    return HttpResponse(status=status, headers=headers, body=data)


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
