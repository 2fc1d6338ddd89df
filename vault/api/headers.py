"""Security headers, set on every response the handler returns (decision D8).

Upstream added them in a middleware, which exceptions bypass, so its 404/409/422/500
responses went out without them. Here they are applied to the final proxy response,
after routing, middlewares and exception handlers, where nothing can skip them.
"""

from __future__ import annotations

from typing import Any

SECURITY_HEADERS: dict[str, str] = {
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
    "X-Content-Type-Options": "nosniff",
}
_LOWER_NAMES = frozenset(name.lower() for name in SECURITY_HEADERS)


def with_security_headers(response: dict[str, Any]) -> dict[str, Any]:
    """Set the headers on a REST API (v1) proxy response, replacing any other spelling of them."""
    headers = {
        name: values
        for name, values in (response.get("multiValueHeaders") or {}).items()
        if name.lower() not in _LOWER_NAMES
    }
    headers.update({name: [value] for name, value in SECURITY_HEADERS.items()})
    response["multiValueHeaders"] = headers
    return response
