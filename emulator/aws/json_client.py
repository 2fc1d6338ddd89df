"""A signed call to an AWS JSON-protocol service (KMS, DynamoDB) through an :class:`Upstream`.

The daemon's own calls to its backend (the KMS front's ``Decrypt``/``Encrypt``, the
DynamoDB proxy's ``delete-race``) go the way the requests they serve go: through the
same upstream, which for moto is an in-process call. A boto3 client would open its own
HTTP connection to the backend and spend ~1 ms of CPU per call on its machinery; these
protocols are one JSON object each way. Requests are signed with botocore's SigV4
signer, so a backend that reads the account and region from the signature (moto,
LocalStack) sees what it would from an SDK.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.aws.upstream import Upstream


class AwsJsonError(Exception):
    """The backend answered with an error (``code`` as in the SDK's ``Error.Code``), or was unreachable."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class BackendUnreachable(AwsJsonError):
    """No answer: the backend is down or the connection failed."""


@dataclass(frozen=True)
class JsonProtocol:
    """What distinguishes one JSON-protocol service on the wire."""

    signing_name: str
    target_prefix: str
    content_type: str


KMS = JsonProtocol("kms", "TrentService", "application/x-amz-json-1.1")
DYNAMODB = JsonProtocol("dynamodb", "DynamoDB_20120810", "application/x-amz-json-1.0")


class AwsJsonClient:
    def __init__(
        self,
        upstream: Upstream,
        protocol: JsonProtocol,
        *,
        region: str,
        credentials: tuple[str, str],
    ) -> None:
        self.upstream = upstream
        self.protocol = protocol
        self._signer = SigV4Auth(Credentials(*credentials), protocol.signing_name, region)
        self._host = upstream.url.split("://", 1)[-1]

    def call(self, operation: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The answer to ``operation`` as a JSON object; raises :class:`AwsJsonError`."""
        body = json.dumps(payload).encode()
        request = AWSRequest(
            method="POST",
            url=f"{self.upstream.url}/",
            data=body,
            headers={
                "Content-Type": self.protocol.content_type,
                "X-Amz-Target": f"{self.protocol.target_prefix}.{operation}",
                "Host": self._host,
            },
        )
        self._signer.add_auth(request)
        try:
            status, _, data = self.upstream.send("POST", "/", list(request.headers.items()), body)
        except OSError as exc:
            raise BackendUnreachable(
                "ServiceUnavailable", f"the backend is unreachable: {type(exc).__name__}", 503
            ) from None
        try:
            answer: Any = json.loads(data or b"{}")
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise AwsJsonError(
                "InternalFailure", f"the backend answered {status} without a JSON object", status
            )
        if status >= 300:
            code = str(answer.get("__type", "InternalFailure")).rsplit("#", 1)[-1]
            message = str(answer.get("message", answer.get("Message", "")))
            raise AwsJsonError(code, message, status)
        return answer
