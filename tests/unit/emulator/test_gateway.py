"""The emulated API Gateway: event mapping and API Gateway's own answers, with fake handlers."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import logging
import math
import time
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.aws.gateway.event import HttpRequest
from emulator.aws.gateway.server import HEALTH_PATH, ApiGateway, GatewayConfig
from emulator.aws.sigv4 import Principal


class Recorder:
    def __init__(self, result: Any = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.result = result or {
            "statusCode": 200,
            "headers": {"Content-Type": "application/json"},
            "body": "{}",
        }

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        return self.result


def request(
    method: str, target: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> HttpRequest:
    path, _, query = target.partition("?")
    return HttpRequest(method, path, query, [("Host", "127.0.0.1:1")] if headers is None else headers, body)


def test_event_mapping_for_a_proxy_path() -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(), handler)
    headers = [("Host", "127.0.0.1:9"), ("X-Tag", "a"), ("X-Tag", "b"), ("Content-Type", "application/json")]
    gateway.dispatch(request("POST", "/v1/vaults/v_1%2B2/decrypt?fields=a,b&x=1&x=2&e=", b'{"k":1}', headers))
    event = handler.events[0]
    assert event["resource"] == "/{proxy+}"
    assert event["path"] == "/vaults/v_1%2B2/decrypt"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"proxy": "vaults/v_1+2/decrypt"}
    assert event["headers"]["X-Tag"] == "b"
    assert event["multiValueHeaders"]["X-Tag"] == ["a", "b"]
    assert event["queryStringParameters"] == {"fields": "a,b", "x": "2", "e": ""}
    assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert event["body"] == '{"k":1}' and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    rc = event["requestContext"]
    assert rc["stage"] == "v1" and rc["path"] == "/v1/vaults/v_1%2B2/decrypt"
    assert rc["resourcePath"] == "/{proxy+}" and rc["httpMethod"] == "POST"
    assert rc["identity"]["sourceIp"] == "127.0.0.1" and rc["requestId"]
    assert handler.contexts[0].aws_request_id == rc["requestId"]
    assert 0 < handler.contexts[0].get_remaining_time_in_millis() <= 10_000


def test_every_invocation_has_a_report_line(caplog: pytest.LogCaptureFixture) -> None:
    def busy(event: dict[str, Any], context: Any) -> Any:
        deadline = time.thread_time() + 0.02
        while time.thread_time() < deadline:
            pass
        if event["httpMethod"] == "DELETE":
            raise RuntimeError("boom")
        return {"statusCode": 200, "body": "{}"}

    gateway = ApiGateway(GatewayConfig(memory_mb=512), busy)
    with caplog.at_level(logging.INFO, logger="emulator.aws.gateway.server"):
        ok = gateway.dispatch(request("GET", "/v1/vaults/x"))
        failed = gateway.dispatch(request("DELETE", "/v1/vaults/x"))
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REPORT ")]
    assert len(reports) == 2  # a handler that raises is reported too
    for report, response in zip(reports, (ok, failed), strict=True):
        request_id = dict(response.headers)["x-amzn-RequestId"]
        fields = dict(part.split(": ", 1) for part in report.removeprefix("REPORT ").split("\t"))
        assert fields["RequestId"] == request_id
        duration, cpu = (
            float(fields["Duration"].removesuffix(" ms")),
            float(fields["CPU Time"].removesuffix(" ms")),
        )
        assert 20 <= cpu <= duration + 1
        assert int(fields["Billed Duration"].removesuffix(" ms")) == math.ceil(duration)
        assert fields["Memory Size"] == "512 MB" and int(fields["Max Memory Used"].removesuffix(" MB")) > 0
    assert failed.status == 502


def test_empty_maps_are_null_and_empty_body_is_none() -> None:
    handler = Recorder()
    ApiGateway(GatewayConfig(), handler).dispatch(request("GET", "/v1/vaults/x", headers=[]))
    event = handler.events[0]
    assert event["headers"] is None and event["multiValueHeaders"] is None
    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["body"] is None


@pytest.mark.parametrize("path", ["/v1", "/v1/", "/", "/v2/vaults", "/vaults", "/v1x/vaults"])
def test_paths_without_a_method_get_missing_authentication_token(path: str) -> None:
    handler = Recorder()
    response = ApiGateway(GatewayConfig(), handler).dispatch(request("GET", path))
    assert response.status == 403
    assert json.loads(response.body) == {"message": "Missing Authentication Token"}
    assert not handler.events


def raising(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "handler",
    [
        raising,
        Recorder(result=["not", "a", "dict"]),
        Recorder(result={"body": "{}"}),
        Recorder(result={"statusCode": 200, "body": {"not": "a string"}}),
        Recorder(result={"statusCode": 200, "body": "{}", "extra": 1}),
        Recorder(result={"statusCode": 200, "body": "%%%", "isBase64Encoded": True}),
        Recorder(result={"statusCode": 700, "body": ""}),
    ],
)
def test_a_failing_or_malformed_handler_is_a_502(handler: Any) -> None:
    response = ApiGateway(GatewayConfig(), handler).dispatch(request("GET", "/v1/vaults/x"))
    assert response.status == 502
    assert json.loads(response.body) == {"message": "Internal server error"}


def test_the_integration_times_out() -> None:
    def slow(event: dict[str, Any], context: Any) -> Any:
        time.sleep(1.0)
        return {"statusCode": 200, "body": ""}

    started = time.monotonic()
    response = ApiGateway(GatewayConfig(integration_timeout=0.2), slow).dispatch(request("GET", "/v1/x"))
    assert response.status == 504
    assert json.loads(response.body) == {"message": "Endpoint request timed out"}
    assert time.monotonic() - started < 0.9


def test_binary_bodies_travel_base64_both_ways() -> None:
    payload = bytes(range(256))
    handler = Recorder(
        result={
            "statusCode": 200,
            "headers": {"Content-Type": "application/octet-stream"},
            "body": base64.b64encode(payload[::-1]).decode(),
            "isBase64Encoded": True,
        }
    )
    response = ApiGateway(GatewayConfig(), handler).dispatch(
        request("PUT", "/v1/blob", payload, [("Content-Type", "application/octet-stream")])
    )
    event = handler.events[0]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert response.body == payload[::-1]


def test_response_headers_are_merged_and_defaulted() -> None:
    handler = Recorder(
        result={
            "statusCode": 201,
            "headers": {"A": "1"},
            "multiValueHeaders": {"B": ["x", "y"]},
            "body": "{}",
        }
    )
    response = ApiGateway(GatewayConfig(), handler).dispatch(request("GET", "/v1/x"))
    assert response.status == 201
    assert (
        ("A", "1") in response.headers and ("B", "x") in response.headers and ("B", "y") in response.headers
    )
    assert ("Content-Type", "application/json") in response.headers
    assert any(name == "x-amzn-RequestId" for name, _ in response.headers)


def test_oversized_payload_is_refused() -> None:
    handler = Recorder()
    response = ApiGateway(GatewayConfig(max_payload_bytes=10), handler).dispatch(
        request("POST", "/v1/x", b"x" * 11)
    )
    assert response.status == 413 and not handler.events


PRINCIPAL = Principal("AKIDEMULATORTEST0001", "secret/for/tests", "arn:aws:iam::123456789012:user/tester")


def signed_headers(
    method: str, url: str, body: bytes, secret: str = PRINCIPAL.secret_access_key
) -> list[tuple[str, str]]:
    aws = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(PRINCIPAL.access_key_id, secret), "execute-api", "us-east-1").add_auth(aws)
    return [("Host", "127.0.0.1:9"), *aws.headers.items()]


def test_sigv4_accepts_a_signed_request_and_names_the_caller() -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(principals=(PRINCIPAL,)), handler)
    url = "http://127.0.0.1:9/v1/vaults/abc?fields=b,a&z=1"
    body = b'{"first_name":"A"}'
    response = gateway.dispatch(
        request("PATCH", "/v1/vaults/abc?fields=b,a&z=1", body, signed_headers("PATCH", url, body))
    )
    assert response.status == 200, response.body
    identity = handler.events[0]["requestContext"]["identity"]
    assert identity["userArn"] == PRINCIPAL.arn and identity["accessKey"] == PRINCIPAL.access_key_id


@pytest.mark.parametrize("case", ["unsigned", "wrong-secret", "tampered-body"])
def test_sigv4_refuses_bad_requests(case: str) -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(principals=(PRINCIPAL,)), handler)
    url = "http://127.0.0.1:9/v1/vaults"
    body = b"{}"
    if case == "unsigned":
        headers = [("Host", "127.0.0.1:9")]
    else:
        headers = signed_headers(
            "POST", url, body, "wrong" if case == "wrong-secret" else PRINCIPAL.secret_access_key
        )
    sent = b'{"x":1}' if case == "tampered-body" else body
    response = gateway.dispatch(request("POST", "/v1/vaults", sent, headers))
    assert response.status == 403 and not handler.events
    expected = (
        "Missing Authentication Token" if case == "unsigned" else "signature we calculated does not match"
    )
    assert expected in json.loads(response.body)["message"]


def test_sigv4_refuses_a_stale_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(principals=(PRINCIPAL,)), handler)
    stale = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)

    class Frozen(datetime.datetime):
        @classmethod
        def utcnow(cls) -> datetime.datetime:  # type: ignore[override]
            return stale.replace(tzinfo=None)

        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:  # type: ignore[override]
            return stale if tz else stale.replace(tzinfo=None)

    monkeypatch.setattr("botocore.auth.datetime.datetime", Frozen)
    headers = signed_headers("GET", "http://127.0.0.1:9/v1/vaults/x", b"")
    response = gateway.dispatch(request("GET", "/v1/vaults/x", b"", headers))
    assert response.status == 403 and "expired" in json.loads(response.body)["message"]


def test_the_http_server_serves_on_loopback() -> None:
    handler = Recorder(result={"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello"})
    gateway = ApiGateway(GatewayConfig(), handler)
    gateway.start()
    try:
        assert gateway.url.startswith("http://127.0.0.1:")
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        connection.request(
            "POST", "/v1/vaults?x=1", body=b'{"a":1}', headers={"Content-Type": "application/json"}
        )
        reply = connection.getresponse()
        assert reply.status == 200 and reply.read() == b"hello"
        # keep-alive: a second request on the same connection
        connection.request("GET", "/v1")
        reply = connection.getresponse()
        assert reply.status == 403 and json.loads(reply.read()) == {"message": "Missing Authentication Token"}
        connection.close()
        assert handler.events[0]["headers"]["Host"] == f"127.0.0.1:{gateway.port}"
    finally:
        gateway.stop()


def test_the_health_route_answers_200_and_logs_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(), handler)
    gateway.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="emulator.aws.gateway.server"):
            connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
            connection.request("GET", HEALTH_PATH)
            reply = connection.getresponse()
            assert reply.status == 200 and json.loads(reply.read()) == {"status": "ok"}
            connection.request("GET", "/v1")
            assert connection.getresponse().read()
            connection.close()
        probe_lines = [r for r in caplog.records if HEALTH_PATH in r.getMessage()]
        assert probe_lines and {r.levelno for r in probe_lines} == {logging.DEBUG}
        assert any(r.levelno == logging.INFO and "GET /v1 " in r.getMessage() for r in caplog.records)
        assert not handler.events  # the handler is never invoked for the probe
    finally:
        gateway.stop()


def test_methods_outside_any_get_a_json_405_over_http() -> None:
    handler = Recorder()
    gateway = ApiGateway(GatewayConfig(), handler)
    gateway.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
        for method in ("TRACE", "QUERY", "BREW"):
            connection.request(method, "/v1/vaults")
            reply = connection.getresponse()
            assert reply.status == 405, method
            assert reply.getheader("Content-Type") == "application/json"
            assert reply.getheader("Allow") == "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
            assert json.loads(reply.read()) == {"message": "Method Not Allowed"}
        connection.close()
        assert not handler.events
    finally:
        gateway.stop()
