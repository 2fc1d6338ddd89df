"""Reaching the backend: over HTTP or in process, the same request and the same answer."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulator.aws.backends.config import BackendConfig
from emulator.aws.backends.moto_server import MotoBackend
from emulator.aws.json_client import DYNAMODB, KMS, AwsJsonClient, AwsJsonError, BackendUnreachable
from emulator.aws.sigv4 import Principal, SigV4Verifier
from emulator.aws.upstream import HttpUpstream, Reply, WsgiUpstream, end_to_end

ACCOUNT = "123456789012"


class Recorder:
    """A WSGI application that records its environ and answers what it is told to."""

    def __init__(self, reply: Reply = (200, [("Content-Type", "application/json")], b"{}")) -> None:
        self.reply = reply
        self.environ: dict[str, Any] = {}
        self.body = b""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environ = environ
        self.body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        status, headers, body = self.reply
        start_response(f"{status} X", [*headers, ("Connection", "close"), ("Date", "today")])
        return [body[:1], body[1:]]


def test_wsgi_environ_is_what_a_server_builds() -> None:
    app = Recorder()
    upstream = WsgiUpstream(app, "http://127.0.0.1:4566")
    headers = [
        ("Host", "127.0.0.1:9"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Target", "DynamoDB_20120810.GetItem"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("X_Spoofed", "no"),
        ("Connection", "keep-alive"),
    ]
    status, reply_headers, body = upstream.send("POST", "/a%20b/?x=1", headers, b"payload")
    environ = app.environ
    assert (status, body, app.body) == (200, b"{}", b"payload")
    assert reply_headers == [("Content-Type", "application/json")]  # hop-by-hop and Date dropped
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/a b/" and environ["QUERY_STRING"] == "x=1"
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == "4566"
    assert environ["CONTENT_TYPE"] == "application/x-amz-json-1.0" and environ["CONTENT_LENGTH"] == "7"
    assert environ["HTTP_HOST"] == "127.0.0.1:9"
    assert environ["HTTP_X_AMZ_TARGET"] == "DynamoDB_20120810.GetItem"
    assert environ["HTTP_X_MULTI"] == "a,b"
    assert "HTTP_X_SPOOFED" not in environ and "HTTP_CONNECTION" not in environ


def test_a_failing_application_is_a_500() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    status, _, body = WsgiUpstream(broken, "http://127.0.0.1:1").send("POST", "/", [], b"")
    assert status == 500 and b"boom" not in body


@pytest.fixture
def http_backend() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            answer = b'{"__type":"com.amazonaws.kms#NotFoundException","message":"no such key"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_http_upstream_and_json_errors(http_backend: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = http_backend
    client = AwsJsonClient(HttpUpstream(url), KMS, region="eu-west-1", credentials=("AKIDEXAMPLE", "secret"))
    with pytest.raises(AwsJsonError) as refused:
        client.call("DescribeKey", {"KeyId": "k"})
    assert (refused.value.code, refused.value.message, refused.value.status) == (
        "NotFoundException",
        "no such key",
        400,
    )
    request = seen[0]
    assert request["headers"]["X-Amz-Target"] == "TrentService.DescribeKey"
    assert json.loads(request["body"]) == {"KeyId": "k"}
    # The signature is a valid SigV4 signature for KMS in the client's region.
    verifier = SigV4Verifier(
        [Principal("AKIDEXAMPLE", "secret", f"arn:aws:iam::{ACCOUNT}:user/x")], "eu-west-1", service="kms"
    )
    verdict = verifier.verify("POST", "/", "", list(request["headers"].items()), request["body"])
    assert isinstance(verdict, Principal)


def test_an_unreachable_backend() -> None:
    client = AwsJsonClient(
        HttpUpstream("http://127.0.0.1:1", timeout=2), DYNAMODB, region="us-east-1", credentials=("a", "b")
    )
    with pytest.raises(BackendUnreachable):
        client.call("ListTables", {})


def test_end_to_end_headers() -> None:
    kept = end_to_end([("Server", "x"), ("Transfer-Encoding", "chunked"), ("X-Amzn-RequestId", "r")])
    assert kept == [("X-Amzn-RequestId", "r")]


def test_moto_in_process_answers_like_moto_over_http(tmp_path: Path) -> None:
    with MotoBackend(BackendConfig(state_dir=tmp_path)) as backend:
        backend.start()
        credentials = (backend.access_key_id, backend.secret_access_key)
        in_process = AwsJsonClient(backend.upstream("kms"), KMS, region="us-east-1", credentials=credentials)
        over_http = AwsJsonClient(
            HttpUpstream(backend.endpoint_url), KMS, region="us-east-1", credentials=credentials
        )
        key = in_process.call("CreateKey", {"Description": "upstream test"})["KeyMetadata"]["KeyId"]
        plaintext = base64.b64encode(b"secret").decode()
        blob = over_http.call("Encrypt", {"KeyId": key, "Plaintext": plaintext})["CiphertextBlob"]
        assert in_process.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == plaintext
        assert in_process.call("ListKeys", {}) == over_http.call("ListKeys", {})
        # The boto3 view of the same backend sees the key made in process.
        assert backend.client("kms").describe_key(KeyId=key)["KeyMetadata"]["Description"] == "upstream test"
        with pytest.raises(AwsJsonError) as missing:
            in_process.call("DescribeKey", {"KeyId": "alias/none"})
        assert missing.value.code == "NotFoundException"
