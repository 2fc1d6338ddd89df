"""Each emulated service answers what its fault hooks inject, in its own protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import pytest

from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy
from emulator.aws.gateway.event import HttpRequest
from emulator.aws.gateway.server import ApiGateway, GatewayConfig
from emulator.aws.kms.front import KmsError, KmsFront
from emulator.nitro.nsm import NsmService
from emulator.nitro.pki import TestPki


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki.create()


class Handler:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls += 1
        return {"statusCode": 200, "headers": {}, "body": "{}"}


def test_the_gateway_throttles_and_fails_per_route_before_the_handler_runs() -> None:
    handler = Handler()
    gateway = ApiGateway(GatewayConfig(), handler)

    def get(path: str) -> Any:
        return gateway.dispatch(HttpRequest("GET", path, "", [("Host", "127.0.0.1:1")], b""))

    gateway.faults.throttle(1, "GET /v1/vaults/x")
    gateway.faults.fail(1, 503)
    throttled = get("/v1/vaults/x")
    assert throttled.status == 429 and ("x-amzn-ErrorType", "TooManyRequestsException") in throttled.headers
    failed = get("/v1/vaults/y")
    assert failed.status == 503 and json.loads(failed.body) == {"message": "Internal server error"}
    assert handler.calls == 0
    assert get("/v1/vaults/x").status == 200 and handler.calls == 1


def test_the_dynamodb_proxy_answers_dynamodbs_errors_without_reaching_the_backend() -> None:
    # Port 9 (discard) on loopback: nothing answers there, so a forwarded call would fail.
    proxy = DynamoDbFaultProxy("http://127.0.0.1:9", region="us-east-1", credentials=("a", "b"))
    headers = [("X-Amz-Target", "DynamoDB_20120810.GetItem")]
    proxy.faults.throttle(1, "GetItem")
    proxy.faults.fail(1, 500, "GetItem")
    status, _, body = proxy.handle("/", headers, b"{}")
    assert (status, json.loads(body)["__type"].rpartition("#")[2]) == (400, "ThrottlingException")
    status, _, body = proxy.handle("/", headers, b"{}")
    assert (status, json.loads(body)["__type"].rpartition("#")[2]) == (500, "InternalServerError")
    assert proxy.counters["forwarded"] == 0


def test_the_kms_front_throttles_and_fails_in_the_kms_protocol(pki: TestPki) -> None:
    front = KmsFront(backend="http://127.0.0.1:9", trusted_root=pki.root.certificate)
    front.faults.throttle(1, "Decrypt")
    front.faults.fail(1, 500)
    with pytest.raises(KmsError) as failed:
        front.apply_faults("ListKeys")  # the throttle is for Decrypt only; the failure takes this one
    assert (failed.value.error_type, failed.value.status) == ("KMSInternalException", 500)
    with pytest.raises(KmsError) as throttled:
        front.apply_faults("Decrypt")
    assert (throttled.value.error_type, throttled.value.status) == ("ThrottlingException", 400)
    front.apply_faults("Decrypt")  # both used up


def test_the_nsm_answers_internal_error_while_a_fault_is_on(pki: TestPki, tmp_path: Path) -> None:
    service = NsmService(pki, tmp_path / "nsm")
    service.faults.fail(1, 500, "GetRandom")
    assert cbor2.loads(service.handle("enclave", cbor2.dumps("GetRandom"))) == {"Error": "InternalError"}
    assert "GetRandom" in cbor2.loads(service.handle("enclave", cbor2.dumps("GetRandom")))
