"""The DynamoDB fault proxy: a transparent pass-through until armed, then DynamoDB's own conflict answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy, IdempotencyCache, WriteFault
from vault.api.audit import AuditEventType, AuditRecord
from vault.api.errors import ApiError
from vault.api.store import VaultStore
from vault.infra.table import vault_key

TABLE = "vault"


class Upstream:
    """A stand-in backend that answers ``{}`` to everything and records the targets it saw."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                upstream.targets.append(self.headers.get("X-Amz-Target", ""))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[DynamoDbFaultProxy]:
    proxy = DynamoDbFaultProxy(upstream.url, region="us-east-1", credentials=("test", "test"))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def store(proxy: DynamoDbFaultProxy) -> VaultStore:
    client = boto3.client(
        "dynamodb",
        endpoint_url=proxy.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}),
    )
    return VaultStore(client, TABLE)


def update_transaction(store: VaultStore, vault_id: str = "v_a") -> Any:
    txn = store.transaction()
    txn.update_vault(vault_id, modified_micros=1)
    txn.put_audit(AuditRecord(AuditEventType.UPDATE, vault_id, 1))
    return txn


def audit_only(store: VaultStore) -> Any:
    txn = store.transaction()
    txn.put_audit(AuditRecord(AuditEventType.UPDATE, "v_a", 2))
    return txn


def test_unarmed_proxy_forwards_everything(
    store: VaultStore, upstream: Upstream, proxy: DynamoDbFaultProxy
) -> None:
    store.commit(update_transaction(store))
    assert store.get_vault("v_a") is None
    assert upstream.targets == ["DynamoDB_20120810.TransactWriteItems", "DynamoDB_20120810.GetItem"]
    assert proxy.counters == {"forwarded": 2, "conflicts": 0, "races": 0, "held": 0, "replayed": 0}


def test_conflict_is_dynamodbs_cancellation_and_the_api_answers_409(
    store: VaultStore, upstream: Upstream, proxy: DynamoDbFaultProxy
) -> None:
    proxy.arm(WriteFault(count=1))
    with pytest.raises(ApiError) as cancelled:
        store.commit(update_transaction(store))
    assert (cancelled.value.status, cancelled.value.code.value) == (409, "TransactionCancelled")
    assert upstream.targets == []  # nothing reached the backend
    assert proxy.armed() == {}  # the one allowed conflict was used up
    store.commit(update_transaction(store))
    assert upstream.targets == ["DynamoDB_20120810.TransactWriteItems"]


def test_cancellation_reasons_name_the_conflicting_action(
    store: VaultStore, proxy: DynamoDbFaultProxy
) -> None:
    proxy.arm(WriteFault())
    txn = update_transaction(store)
    with pytest.raises(ClientError) as error:
        store._client.transact_write_items(TransactItems=[action.request for action in txn.actions])
    response = error.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in response["CancellationReasons"]] == ["TransactionConflict", "None"]


def test_vault_target_ignores_audit_only_writes_unless_told(
    store: VaultStore, upstream: Upstream, proxy: DynamoDbFaultProxy
) -> None:
    proxy.arm(WriteFault(actions=("Put",)))
    store.commit(audit_only(store))
    assert proxy.counters["conflicts"] == 0
    proxy.arm(WriteFault(actions=("Put",), target="all"))
    with pytest.raises(ApiError):
        store.commit(audit_only(store))
    proxy.disarm()
    store.commit(audit_only(store))
    assert upstream.targets.count("DynamoDB_20120810.TransactWriteItems") == 2


def test_delete_race_deletes_the_vault_item_then_forwards(
    store: VaultStore, upstream: Upstream, proxy: DynamoDbFaultProxy
) -> None:
    proxy.arm(WriteFault(mode="delete-race", actions=("Update",), count=1))
    store.commit(update_transaction(store))
    assert upstream.targets == ["DynamoDB_20120810.DeleteItem", "DynamoDB_20120810.TransactWriteItems"]
    assert proxy.counters["races"] == 1


def test_write_fault_validates_its_fields() -> None:
    for bad in (
        {"mode": "explode"},
        {"target": "audit"},
        {"actions": ()},
        {"actions": ("Scan",)},
        {"count": 0},
        {"delay_ms": 0},
    ):
        with pytest.raises(ValueError):
            WriteFault(**bad)  # type: ignore[arg-type]
    entry = {"Update": {"Key": vault_key("v_b"), "TableName": TABLE}}
    assert WriteFault().match([{"Put": {"Item": {"pk": {"S": "LOG##v_b"}}}}, entry]) == 1


def test_malformed_bodies_pass_through(proxy: DynamoDbFaultProxy) -> None:
    proxy.arm(WriteFault())
    status, _, body = proxy.handle(
        "/", [("X-Amz-Target", "DynamoDB_20120810.TransactWriteItems")], b"not json"
    )
    assert status == 200 and json.loads(body) == {}


def client_for(proxy: DynamoDbFaultProxy, read_timeout: float, attempts: int) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=proxy.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(
            read_timeout=read_timeout, retries={"total_max_attempts": attempts, "mode": "standard"}
        ),
    )


def test_a_retried_transaction_is_answered_from_its_token(
    upstream: Upstream, proxy: DynamoDbFaultProxy
) -> None:
    # The answer is held past the client's read timeout; botocore retries with the same token.
    proxy.arm(WriteFault(mode="slow-commit", delay_ms=1500, count=1))
    store = VaultStore(client_for(proxy, read_timeout=0.5, attempts=3), TABLE)
    store.commit(update_transaction(store))
    assert upstream.targets == ["DynamoDB_20120810.TransactWriteItems"]  # committed once
    assert proxy.counters["held"] == 1 and proxy.counters["replayed"] == 1


def test_idempotency_follows_dynamodb(proxy: DynamoDbFaultProxy, upstream: Upstream) -> None:
    target = [("X-Amz-Target", "DynamoDB_20120810.TransactWriteItems")]
    first = json.dumps({"TransactItems": [], "ClientRequestToken": "t-1"}).encode()
    assert proxy.handle("/", target, first)[0] == 200
    assert proxy.handle("/", target, first)[0] == 200
    assert len(upstream.targets) == 1
    other = json.dumps({"TransactItems": [{"Put": {}}], "ClientRequestToken": "t-1"}).encode()
    status, _, body = proxy.handle("/", target, other)
    assert status == 400 and b"IdempotentParameterMismatchException" in body
    # No token: every call runs.
    untokened = json.dumps({"TransactItems": []}).encode()
    proxy.handle("/", target, untokened)
    proxy.handle("/", target, untokened)
    assert len(upstream.targets) == 3


def test_idempotency_cache_states() -> None:
    cache = IdempotencyCache(window=600, max_tokens=2)
    assert cache.begin("a", "d1") is None
    in_progress = cache.begin("a", "d1")
    assert in_progress is not None and b"TransactionInProgressException" in in_progress[2]
    cache.finish("a", (500, [], b""))  # a failed call is forgotten: its retry runs again
    assert cache.begin("a", "d1") is None
    cache.finish("a", (200, [], b"{}"))
    assert cache.begin("a", "d1") == (200, [], b"{}")
    assert cache.begin("b", "d") is None and cache.begin("c", "d") is None  # bounded: "a" goes
    assert cache.begin("a", "d1") is None
