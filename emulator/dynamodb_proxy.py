"""A pass-through proxy in front of the backend's DynamoDB endpoint, with switchable write faults.

The API Lambda's DynamoDB client is pointed at this proxy; every request goes to the
backend unchanged until a fault is armed. Neither moto nor DynamoDB Local ever cancels
a transaction for a concurrent writer, so the conflicts the API must survive are made
here, at the wire, the same way on every backend:

``conflict``
    A ``TransactWriteItems`` call that matches is answered with
    ``TransactionCanceledException`` and the reason ``TransactionConflict`` at the
    matching action (``None`` elsewhere), which is what DynamoDB answers when another
    transaction holds the item. Nothing reaches the backend, so nothing is written.
``delete-race``
    The vault item is deleted first (a concurrent ``DELETE`` that won the race between
    the API's read and its write), then the call is forwarded: the backend itself fails
    its ``attribute_exists`` condition.

A call matches when one of its actions (``Put``, ``Update``, ``Delete``,
``ConditionCheck``) is in ``actions`` and, for ``target="vault"``, acts on a vault
item (partition key ``VAULT##...``). Each match uses up one of ``count``.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

from vault.infra.table import KEY_SEPARATOR, PARTITION_KEY, SORT_KEY, VAULT_PREFIX

Mode = Literal["conflict", "delete-race"]
Target = Literal["vault", "all"]
MODES: tuple[Mode, ...] = ("conflict", "delete-race")
TARGETS: tuple[Target, ...] = ("vault", "all")
ACTIONS = ("Put", "Update", "Delete", "ConditionCheck")
TRANSACT_TARGET = "DynamoDB_20120810.TransactWriteItems"
JSON_10 = "application/x-amz-json-1.0"
MAX_BODY = 16 * 1024 * 1024
#: Upper bound of one armed fault, so a forgotten one cannot outlive a long test run unseen.
MAX_COUNT = 100_000
UPSTREAM_TIMEOUT = 30.0
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade", "te"}
)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteFault:
    mode: Mode = "conflict"
    target: Target = "vault"
    actions: tuple[str, ...] = ("Put", "Update", "Delete")
    count: int = MAX_COUNT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        unknown = set(self.actions) - set(ACTIONS)
        if unknown or not self.actions:
            raise ValueError(f"actions must be a non-empty subset of {', '.join(ACTIONS)}")
        if not 1 <= self.count <= MAX_COUNT:
            raise ValueError(f"count must be within 1..{MAX_COUNT}")

    def match(self, items: list[dict[str, Any]]) -> int | None:
        """Index of the action this fault hits in a ``TransactItems`` list, or ``None``."""
        for index, entry in enumerate(items):
            kind = next((k for k in ACTIONS if k in entry), None)
            if kind is None or kind not in self.actions:
                continue
            if self.target == "all" or _is_vault_action(entry[kind]):
                return index
        return None


def _is_vault_action(action: dict[str, Any]) -> bool:
    key = action.get("Item") or action.get("Key") or {}
    partition = key.get(PARTITION_KEY, {}).get("S", "")
    return isinstance(partition, str) and partition.startswith(VAULT_PREFIX + KEY_SEPARATOR)


def cancellation(items: int, index: int) -> bytes:
    """The body DynamoDB sends when a transaction is cancelled for a conflict on ``index``."""
    reasons: list[dict[str, str]] = [{"Code": "None"} for _ in range(items)]
    reasons[index] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
    summary = ", ".join(reason["Code"] for reason in reasons)
    return json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
            f"[{summary}]",
            "CancellationReasons": reasons,
        }
    ).encode()


class DynamoDbFaultProxy:
    """The proxy; ``start()`` binds 127.0.0.1 (``port=0``: a free port)."""

    def __init__(
        self,
        upstream_url: str,
        *,
        region: str,
        credentials: tuple[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._fault: WriteFault | None = None
        self._remaining = 0
        self.counters = {"forwarded": 0, "conflicts": 0, "races": 0}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None

    # -- control ---------------------------------------------------------------------------

    def arm(self, fault: WriteFault) -> None:
        with self._lock:
            self._fault = fault
            self._remaining = fault.count

    def disarm(self) -> None:
        with self._lock:
            self._fault = None
            self._remaining = 0

    def armed(self) -> dict[str, Any] | None:
        with self._lock:
            if self._fault is None:
                return None
            return {**asdict(self._fault), "remaining": self._remaining}

    def _take(self, items: list[dict[str, Any]]) -> tuple[WriteFault, int] | None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return None
            index = fault.match(items)
            if index is None:
                return None
            self._remaining -= 1
            if self._remaining <= 0:
                self._fault = None
            return fault, index

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is None:
            proxy = self

            class Handler(_Handler):
                owner = proxy

            self._server = ThreadingHTTPServer((self._host, self._requested_port), Handler)
            self._server.daemon_threads = True
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="dynamodb-proxy",
                daemon=True,
            )
            self._thread.start()
        return self.endpoint_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the DynamoDB proxy is not started")
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    # -- requests --------------------------------------------------------------------------

    def handle(
        self, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        if target == TRANSACT_TARGET:
            items = _transact_items(body)
            taken = self._take(items) if items else None
            if taken is not None:
                fault, index = taken
                if fault.mode == "conflict":
                    self._count("conflicts")
                    return 400, [("Content-Type", JSON_10)], cancellation(len(items), index)
                self._count("races")
                self._delete_item(items[index])
        self._count("forwarded")
        return self.forward(path, headers, body)

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def _delete_item(self, entry: dict[str, Any]) -> None:
        action = next(entry[k] for k in ACTIONS if k in entry)
        key = action.get("Key") or {
            name: value
            for name, value in (action.get("Item") or {}).items()
            if name in (PARTITION_KEY, SORT_KEY)
        }
        try:
            self._backend().delete_item(TableName=action["TableName"], Key=key)
        except Exception:  # noqa: BLE001 - the race is best effort; the transaction still goes through
            _log.exception("delete-race: deleting the item failed")

    def _backend(self) -> Any:
        # Created on first use: most runs never arm a race.
        if self._client is None:
            import boto3
            from botocore.config import Config

            access_key, secret = self._credentials
            self._client = boto3.session.Session().client(
                "dynamodb",
                endpoint_url=self.upstream_url,
                region_name=self.region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret,
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
            )
        return self._client

    def forward(
        self, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request to the backend unchanged (its signature still verifies)."""
        upstream = urlsplit(self.upstream_url)
        connection = http.client.HTTPConnection(
            upstream.hostname or "127.0.0.1", upstream.port or 80, timeout=UPSTREAM_TIMEOUT
        )
        try:
            connection.request(
                "POST", path, body=body, headers={k: v for k, v in headers if k.lower() not in _HOP_BY_HOP}
            )
            response = connection.getresponse()
            data = response.read()
            kept = [
                (k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP | {"server", "date"}
            ]
            return response.status, kept, data
        except OSError as exc:
            # A 500 with DynamoDB's InternalServerError shape: the client retries it as DynamoDB's own.
            message = f"the backend is unreachable: {type(exc).__name__}"
            error = {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": message}
            return 500, [("Content-Type", JSON_10)], json.dumps(error).encode()
        finally:
            connection.close()


def _transact_items(body: bytes) -> list[dict[str, Any]]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return []
    items = payload.get("TransactItems") if isinstance(payload, dict) else None
    return [entry for entry in items if isinstance(entry, dict)] if isinstance(items, list) else []


class _Handler(BaseHTTPRequestHandler):
    owner: DynamoDbFaultProxy
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, keep-alive requests wait for a delayed ACK.
    disable_nagle_algorithm = True
    timeout = 60
    server_version = "dynamodb-proxy"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("dynamodb proxy request: %s", format % args)

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self._send(413 if length and length.isdigit() else 411, [], b"")
            self.close_connection = True
            return
        body = self.rfile.read(int(length))
        status, headers, data = self.owner.handle(self.path, list(self.headers.items()), body)
        self._send(status, headers, data)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
