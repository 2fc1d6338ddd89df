"""The instance metadata service (IMDSv2) of the emulated parent instance.

It serves what the parent reads on EC2, with IMDSv2's session-token rules:

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1..21600)
  returns a token; a missing or out-of-range TTL is 400, a request carrying
  ``X-Forwarded-For`` is 403 (IMDS refuses proxied token requests).
* Every ``GET`` needs a live token in ``X-aws-ec2-metadata-token`` (else 401):
  ``/latest/meta-data/iam/security-credentials/`` lists the role,
  ``.../security-credentials/<role>`` returns its credentials,
  ``/latest/meta-data/iam/info`` and ``/latest/meta-data/instance-id`` describe the instance.

Credentials come from a provider (random ``ASIA...`` keys by default) and expire
``credential_lifetime`` after issue; like IMDS, a credential is replaced once it is
within ``rotation_margin`` of expiring, so a short lifetime forces a new one on every
read. Counters record each kind of request. Fault hooks (``ImdsServer.faults``, an
:class:`emulator.faults.hooks.FaultHooks`, per request path) fail or delay answers, so
tests can check caching and retries; ``fail_next`` and ``response_delay`` are shorthands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import signal
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import unquote

from emulator.faults.hooks import FaultHooks
from emulator.host.http import DEFAULT_LIMITS, ConnectionLimits, LoopbackServer
from emulator.host.http_handler import LoopbackHandler, RequestError

TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a path, not a secret
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
IAM_INFO_PATH = "/latest/meta-data/iam/info"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
MAX_TOKEN_TTL = 21600
DEFAULT_ROLE = "vault-parent-instance-role"
DEFAULT_INSTANCE_ID = "i-0123456789abcdef0"
DEFAULT_ACCOUNT_ID = "123456789012"
_MAX_BODY = 1 << 16

CredentialProvider = Callable[[], Mapping[str, str]]


def random_credentials() -> dict[str, str]:
    """Session credentials shaped like STS ones (``ASIA`` access key, 40-char secret)."""
    upper = string.ascii_uppercase + string.digits
    mixed = string.ascii_letters + string.digits + "+/"
    return {
        "AccessKeyId": "ASIA" + "".join(secrets.choice(upper) for _ in range(16)),
        "SecretAccessKey": "".join(secrets.choice(mixed) for _ in range(40)),
        "Token": secrets.token_urlsafe(96),
    }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ImdsServer:
    """IMDSv2 on ``host``:``port`` (127.0.0.1 and an ephemeral port by default)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
        role: str | None = DEFAULT_ROLE,
        credential_provider: CredentialProvider = random_credentials,
        credential_lifetime: timedelta = timedelta(hours=6),
        rotation_margin: timedelta = timedelta(minutes=5),
        instance_id: str = DEFAULT_INSTANCE_ID,
        account_id: str = DEFAULT_ACCOUNT_ID,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.host = host
        #: ``None``: the instance has no profile (listing and role paths answer 404).
        self.role = role
        self.credential_provider = credential_provider
        self.credential_lifetime = credential_lifetime
        self.rotation_margin = rotation_margin
        self.instance_id = instance_id
        self.account_id = account_id
        self.clock = clock
        #: Latency and failures, per request path (``None``: every path).
        self.faults = FaultHooks()
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._tokens: dict[str, float] = {}
        self._credential: dict[str, str] | None = None
        self._issued: datetime | None = None
        self._expiration: datetime | None = None
        self._server = LoopbackServer(_Handler, self, name="imds", host=host, port=port, limits=limits)

    # -- control -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def endpoint(self) -> str:
        """The base URL to configure as the IMDS endpoint (``--imds-endpoint``)."""
        return self._server.url

    def start(self) -> ImdsServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ImdsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """Answer the next ``count`` requests (any path) with ``status`` and no body."""
        self.faults.fail(count, status)

    @property
    def response_delay(self) -> float:
        """Seconds to wait before answering anything (to exercise client timeouts)."""
        return self.faults.state().latency.get(None, 0.0)

    @response_delay.setter
    def response_delay(self, seconds: float) -> None:
        self.faults.latency(seconds)

    def rotate(self) -> None:
        """Issue new credentials on the next read."""
        with self._lock:
            self._credential = None

    def count(self, kind: str) -> int:
        """Requests seen of one kind: ``token``, ``role_list``, ``credentials``, ``iam_info``,
        ``instance_id``, ``unauthorized``, ``failed`` (injected), ``not_found``, or ``total``."""
        with self._lock:
            return self._counters[kind]

    @property
    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()

    @property
    def current_expiration(self) -> datetime | None:
        with self._lock:
            return self._expiration

    # -- behaviour (called by the handler threads) ---------------------------------------

    def record(self, kind: str) -> None:
        """Count one request of ``kind`` (see :meth:`count`)."""
        with self._lock:
            self._counters[kind] += 1

    def injected_failure(self, path: str = "") -> int | None:
        """Count a request; apply the hooks' latency; the status to fail it with, if any."""
        self.record("total")
        injected = self.faults.before(path)
        if injected is None:
            return None
        self.record("failed")
        # IMDS has no throttling answer of its own; EC2's is 429.
        return injected.status if injected.kind == "failure" else 429

    def issue_token(self, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._tokens = {t: expiry for t, expiry in self._tokens.items() if expiry > now}
            self._tokens[token] = now + ttl
        return token

    def token_valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def role_credentials(self) -> dict[str, str]:
        # Whole seconds, as served, so ``current_expiration`` equals the served Expiration.
        now = self.clock().replace(microsecond=0)
        with self._lock:
            stale = self._expiration is None or now >= self._expiration - self.rotation_margin
            if self._credential is None or stale:
                self._credential = dict(self.credential_provider())
                self._issued = now
                self._expiration = now + self.credential_lifetime
            assert self._issued is not None and self._expiration is not None
            return {
                "Code": "Success",
                "LastUpdated": rfc3339(self._issued),
                "Type": "AWS-HMAC",
                "AccessKeyId": self._credential["AccessKeyId"],
                "SecretAccessKey": self._credential["SecretAccessKey"],
                "Token": self._credential.get("Token", ""),
                "Expiration": rfc3339(self._expiration),
            }

    def iam_info(self) -> dict[str, str]:
        return {
            "Code": "Success",
            "LastUpdated": rfc3339(self.clock()),
            "InstanceProfileArn": f"arn:aws:iam::{self.account_id}:instance-profile/{self.role}",
            "InstanceProfileId": "AIPA" + hashlib.sha256(self.instance_id.encode()).hexdigest()[:17].upper(),
        }


class _Handler(LoopbackHandler):
    owner: ImdsServer
    # IMDS requests have no body worth reading.
    max_body = _MAX_BODY
    server_version = "EC2ws"
    sys_version = ""

    @classmethod
    def error_reply(cls, error: RequestError) -> tuple[list[tuple[str, str]], bytes]:
        # IMDS answers its errors as plain text: the status's reason phrase.
        return [("Content-Type", "text/plain")], HTTPStatus(error.status).phrase.encode()

    @property
    def imds(self) -> ImdsServer:
        return self.owner

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry no secrets, but the emulator's logs are its own business.
        return

    def _send(self, status: int, body: str = "", content_type: str = "text/plain", **headers: str) -> None:
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _begin(self) -> bool:
        """Drain any body, apply the delay and injected failures; False if already answered."""
        if self.read_body() is None:
            return False
        failure = self.imds.injected_failure(self.path.split("?", 1)[0])
        if failure is not None:
            self._send(failure)
            return False
        return True

    def do_PUT(self) -> None:
        if not self._begin():
            return
        if self.path != TOKEN_PATH:
            self.imds.record("not_found")
            self._send(404, "Not Found")
            return
        if self.headers.get("X-Forwarded-For"):
            self._send(403, "Forbidden")
            return
        raw_ttl = self.headers.get(TTL_HEADER)
        if raw_ttl is None or not raw_ttl.strip().isdigit() or not 1 <= int(raw_ttl) <= MAX_TOKEN_TTL:
            self._send(400, "Bad Request")
            return
        self.imds.record("token")
        ttl = int(raw_ttl)
        self._send(200, self.imds.issue_token(ttl), **{TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:
        if not self._begin():
            return
        if not self.imds.token_valid(self.headers.get(TOKEN_HEADER)):
            self.imds.record("unauthorized")
            self._send(401, "Unauthorized")
            return
        path = self.path.split("?", 1)[0]
        role = self.imds.role
        if path == INSTANCE_ID_PATH:
            self.imds.record("instance_id")
            self._send(200, self.imds.instance_id)
        elif path == IAM_INFO_PATH and role:
            self.imds.record("iam_info")
            self._send(200, json.dumps(self.imds.iam_info(), indent=2))
        elif path == CREDENTIALS_PATH and role:
            self.imds.record("role_list")
            self._send(200, role)
        elif path.startswith(CREDENTIALS_PATH) and role and unquote(path[len(CREDENTIALS_PATH) :]) == role:
            self.imds.record("credentials")
            self._send(200, json.dumps(self.imds.role_credentials(), indent=2))
        else:
            self.imds.record("not_found")
            self._send(404, "Not Found")

    def do_POST(self) -> None:
        if self._begin():
            self._send(405, "Method Not Allowed", Allow="GET, PUT")

    do_DELETE = do_POST
    do_PATCH = do_POST


def main(argv: list[str] | None = None) -> int:
    """Run the service in the foreground: ``python -m emulator.aws.imds --port 8111``."""
    parser = argparse.ArgumentParser(prog="emulator.aws.imds", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--role", default=DEFAULT_ROLE)
    parser.add_argument("--lifetime", type=int, default=6 * 3600, help="credential lifetime in seconds")
    args = parser.parse_args(argv)
    server = ImdsServer(
        host=args.host, port=args.port, role=args.role, credential_lifetime=timedelta(seconds=args.lifetime)
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with server:
        print(server.endpoint, flush=True)
        stopping.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
