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

``slow-commit``
    The call is forwarded and committed, but its answer is held ``delay_ms`` -- longer
    than the API's 1 s read timeout -- so the client retries a transaction that already
    happened.

Beside these, the proxy has the fault hooks every emulated service has (``faults``, an
:class:`emulator.faults.hooks.FaultHooks`, per operation): a throttled call is answered
with DynamoDB's ``ThrottlingException``, a failed one with ``InternalServerError``.

A call matches when one of its actions (``Put``, ``Update``, ``Delete``,
``ConditionCheck``) is in ``actions`` and, for ``target="vault"``, acts on a vault
item (partition key ``VAULT##...``). Each match uses up one of ``count``.

The proxy also gives ``TransactWriteItems`` DynamoDB's idempotency, which neither moto
nor DynamoDB Local has: botocore puts a ``ClientRequestToken`` in every call and keeps
it across its retries, and DynamoDB answers a retry of a committed transaction with
its success instead of running it again. Without that, a retry after a read timeout
fails its own conditions (the audit record it wrote the first time exists) and the API
answers 409 for a write that was made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from emulator.aws.json_client import DYNAMODB, AwsJsonClient, AwsJsonError
from emulator.aws.upstream import Reply, Upstream, upstream_for
from emulator.faults.hooks import ACTIONS, FaultHooks, WriteFault
from emulator.host.http import DEFAULT_LIMITS, ConnectionLimits, LoopbackServer
from emulator.host.http_handler import LoopbackHandler, RequestError
from vault.infra.table import PARTITION_KEY, SORT_KEY

TRANSACT_TARGET = "DynamoDB_20120810.TransactWriteItems"
JSON_10 = "application/x-amz-json-1.0"
MAX_BODY = 16 * 1024 * 1024
#: DynamoDB's idempotency window for a ClientRequestToken, and a bound on remembered tokens.
IDEMPOTENCY_WINDOW = 600.0
MAX_TOKENS = 10_000
_log = logging.getLogger(__name__)


def error_body(name: str, message: str) -> bytes:
    return json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{name}", "message": message}).encode()


class IdempotencyCache:
    """What DynamoDB remembers of a ``ClientRequestToken``: the request's digest and its answer."""

    def __init__(self, window: float = IDEMPOTENCY_WINDOW, max_tokens: int = MAX_TOKENS) -> None:
        self.window = window
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        #: token -> (digest, answer or None while the first call runs, when it was stored)
        self._tokens: OrderedDict[str, tuple[str, Reply | None, float]] = OrderedDict()

    def begin(self, token: str, digest: str) -> Reply | None:
        """The answer to give now (a replay or a refusal), or ``None``: run the call."""
        now = time.monotonic()
        with self._lock:
            while self._tokens and (
                len(self._tokens) >= self.max_tokens
                or next(iter(self._tokens.values()))[2] < now - self.window
            ):
                self._tokens.popitem(last=False)
            entry = self._tokens.get(token)
            if entry is None:
                self._tokens[token] = (digest, None, now)
                return None
        known, answer, _ = entry
        if known != digest:
            message = "ClientRequestToken was used with different request parameters"
            return (
                400,
                [("Content-Type", JSON_10)],
                error_body("IdempotentParameterMismatchException", message),
            )
        if answer is None:
            message = "The transaction with the given request token is already in progress."
            return 400, [("Content-Type", JSON_10)], error_body("TransactionInProgressException", message)
        return answer

    def finish(self, token: str, answer: Reply) -> None:
        """Remember a committed call's answer; forget a failed one (a retry runs it again)."""
        with self._lock:
            entry = self._tokens.pop(token, None)
            if entry is not None and answer[0] == 200:
                self._tokens[token] = (entry[0], answer, time.monotonic())


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
        backend: Upstream | str,
        *,
        region: str,
        credentials: tuple[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        self.upstream = upstream_for(backend)
        self.region = region
        self._backend = AwsJsonClient(self.upstream, DYNAMODB, region=region, credentials=credentials)
        self._lock = threading.Lock()
        #: slot ("write" or "reply") -> the armed fault and the matches it has left
        self._armed: dict[str, tuple[WriteFault, int]] = {}
        self.idempotency = IdempotencyCache()
        #: Per-operation throttle, latency and failure (``TransactWriteItems``, ``GetItem``, ...).
        self.faults = FaultHooks()
        self.counters = {"forwarded": 0, "conflicts": 0, "races": 0, "held": 0, "replayed": 0}
        self._server = LoopbackServer(
            _Handler, self, name="dynamodb-proxy", host=host, port=port, limits=limits
        )

    # -- control ---------------------------------------------------------------------------

    def arm(self, fault: WriteFault) -> None:
        with self._lock:
            self._armed[fault.slot] = (fault, fault.count)

    def disarm(self, slot: str | None = None) -> None:
        """Disarm the fault in ``slot`` (``write`` or ``reply``), or both."""
        with self._lock:
            for name in [slot] if slot else list(self._armed):
                self._armed.pop(name, None)

    def armed(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                slot: {**asdict(fault), "actions": list(fault.actions), "remaining": remaining}
                for slot, (fault, remaining) in self._armed.items()
            }

    def _take(self, slot: str, items: list[dict[str, Any]]) -> tuple[WriteFault, int] | None:
        with self._lock:
            armed = self._armed.get(slot)
            if armed is None:
                return None
            fault, remaining = armed
            index = fault.match(items)
            if index is None:
                return None
            if remaining <= 1:
                del self._armed[slot]
            else:
                self._armed[slot] = (fault, remaining - 1)
            return fault, index

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        self._server.start()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def endpoint_url(self) -> str:
        return self._server.url

    # -- requests --------------------------------------------------------------------------

    def handle(self, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        injected = self.faults.before(target.rpartition(".")[2])
        if injected is not None:
            if injected.kind == "throttle":
                return 400, [("Content-Type", JSON_10)], error_body("ThrottlingException", "Rate exceeded")
            failure = error_body("InternalServerError", "injected failure")
            return injected.status, [("Content-Type", JSON_10)], failure
        if target != TRANSACT_TARGET:
            self._count("forwarded")
            return self.forward(path, headers, body)
        payload = _json_object(body)
        items = _transact_items(payload)
        token = payload.get("ClientRequestToken")
        if isinstance(token, str) and token:
            answer = self.idempotency.begin(token, hashlib.sha256(body).hexdigest())
            if answer is not None:
                self._count("replayed")
                return answer
            try:
                answer = self._transact(path, headers, body, items)
            except BaseException:
                self.idempotency.finish(token, (500, [], b""))
                raise
            self.idempotency.finish(token, answer)
        else:
            answer = self._transact(path, headers, body, items)
        held = self._take("reply", items) if items and answer[0] == 200 else None
        if held is not None:
            self._count("held")
            time.sleep(held[0].delay_ms / 1000)
        return answer

    def _transact(
        self, path: str, headers: list[tuple[str, str]], body: bytes, items: list[dict[str, Any]]
    ) -> Reply:
        taken = self._take("write", items) if items else None
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
            self._backend.call("DeleteItem", {"TableName": action["TableName"], "Key": key})
        except (AwsJsonError, KeyError):  # the race is best effort; the transaction still goes through
            _log.exception("delete-race: deleting the item failed")

    def forward(self, path: str, headers: list[tuple[str, str]], body: bytes) -> Reply:
        """Send the request to the backend unchanged (its signature still verifies)."""
        try:
            return self.upstream.send("POST", path, headers, body)
        except OSError as exc:
            # A 500 with DynamoDB's InternalServerError shape: the client retries it as DynamoDB's own.
            message = f"the backend is unreachable: {type(exc).__name__}"
            error = {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": message}
            return 500, [("Content-Type", JSON_10)], json.dumps(error).encode()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _transact_items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    items = payload.get("TransactItems")
    return [entry for entry in items if isinstance(entry, dict)] if isinstance(items, list) else []


#: The proxy's answers to requests refused before their body is read, by status: DynamoDB's error names.
FRAMING_ERRORS = {
    400: "SerializationException",
    411: "ValidationException",
    413: "ValidationException",
    501: "ValidationException",
    503: "ServiceUnavailable",
}


class _Handler(LoopbackHandler):
    owner: DynamoDbFaultProxy
    max_body = MAX_BODY
    length_required = True
    server_version = "dynamodb-proxy"

    @classmethod
    def error_reply(cls, error: RequestError) -> tuple[list[tuple[str, str]], bytes]:
        name = FRAMING_ERRORS.get(error.status, "SerializationException")
        return [("Content-Type", JSON_10)], error_body(name, error.message)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("dynamodb proxy request: %s", format % args)

    def do_POST(self) -> None:
        body = self.read_body()
        if body is None:
            return
        status, headers, data = self.owner.handle(self.path, list(self.headers.items()), body)
        self._send(status, headers, data)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up waiting (a held answer, by design): nobody is left to tell.
            self.close_connection = True
