"""The emulator's SigV4 verifier: the body it checks is the body it received, and the clock is bounded.

Requests are signed by botocore (an independent implementation). botocore signs a
pre-set ``X-Amz-Content-SHA256`` header's value as the payload hash, which is how a
client declares ``UNSIGNED-PAYLOAD`` or a hash of another body.
"""

from __future__ import annotations

import hashlib
import json
from calendar import timegm
from time import gmtime, strftime, strptime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.aws.gateway.event import HttpRequest
from emulator.aws.gateway.server import ApiGateway, GatewayConfig
from emulator.aws.sigv4 import MAX_CLOCK_SKEW, Principal, SigV4Failure, SigV4Verifier, canonical_request

PRINCIPAL = Principal("AKIDEMULATORTEST0001", "secret/for/tests", "arn:aws:iam::123456789012:user/tester")
HOST = "127.0.0.1:9"
PATH = "/v1/vaults/v_abc/decrypt"
CAPTURED_BODY = b'{"fields":["city"]}'
REPLAYED_BODY = b'{"fields":["ssn9","first_name"]}'
HASH_MISMATCH = "The provided 'x-amz-content-sha256' header does not match what was computed."
SIGNATURE_MISMATCH = "The request signature we calculated does not match the signature you provided."


def sign(body: bytes, *, content_sha256: str | None = None) -> list[tuple[str, str]]:
    """The headers botocore sends for a POST of ``body``, optionally declaring a payload hash."""
    headers = {"Content-Type": "application/json"}
    if content_sha256 is not None:
        headers["X-Amz-Content-SHA256"] = content_sha256
    aws = AWSRequest(method="POST", url=f"http://{HOST}{PATH}", data=body, headers=headers)
    SigV4Auth(
        Credentials(PRINCIPAL.access_key_id, PRINCIPAL.secret_access_key), "execute-api", "us-east-1"
    ).add_auth(aws)
    return [("Host", HOST), *aws.headers.items()]


def signed_at(headers: list[tuple[str, str]]) -> int:
    amz_date = next(value for name, value in headers if name.lower() == "x-amz-date")
    return timegm(strptime(amz_date, "%Y%m%dT%H%M%SZ"))


def verify(headers: list[tuple[str, str]], body: bytes, now: float | None = None) -> Principal | SigV4Failure:
    verifier = SigV4Verifier([PRINCIPAL], "us-east-1")
    return verifier.verify("POST", PATH, "", headers, body, now=now)


def refusal(outcome: Principal | SigV4Failure) -> str:
    assert isinstance(outcome, SigV4Failure), "the request was accepted"
    assert outcome.status == 403
    return outcome.message


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("declared", [False, True], ids=["no-header", "matching-header"])
def test_a_signed_request_is_accepted(declared: bool) -> None:
    headers = sign(CAPTURED_BODY, content_sha256=sha256(CAPTURED_BODY) if declared else None)
    assert verify(headers, CAPTURED_BODY) == PRINCIPAL


def test_a_captured_request_replayed_with_another_body_is_refused() -> None:
    """The attack: the signature covers the declared hash of body A; the request carries body B."""
    captured = sign(CAPTURED_BODY, content_sha256=sha256(CAPTURED_BODY))
    assert verify(captured, CAPTURED_BODY) == PRINCIPAL
    assert refusal(verify(captured, REPLAYED_BODY)) == HASH_MISMATCH
    # Dropping the declared hash does not help: the signature is checked over body B's hash.
    stripped = [(name, value) for name, value in captured if name.lower() != "x-amz-content-sha256"]
    assert refusal(verify(stripped, REPLAYED_BODY)).startswith(SIGNATURE_MISMATCH)


def test_a_replay_through_the_gateway_never_reaches_the_handler() -> None:
    reached: list[dict[str, object]] = []

    def handler(event: dict[str, object], context: object) -> dict[str, object]:
        reached.append(event)
        return {"statusCode": 200, "body": "{}"}

    gateway = ApiGateway(GatewayConfig(principals=(PRINCIPAL,)), handler)
    captured = sign(CAPTURED_BODY, content_sha256=sha256(CAPTURED_BODY))
    response = gateway.dispatch(HttpRequest("POST", PATH, "", captured, REPLAYED_BODY))
    assert response.status == 403 and not reached
    assert json.loads(response.body)["message"] == HASH_MISMATCH
    assert gateway.dispatch(HttpRequest("POST", PATH, "", captured, CAPTURED_BODY)).status == 200
    assert len(reached) == 1 and reached[0]["body"] == CAPTURED_BODY.decode()


@pytest.mark.parametrize(
    "declared",
    [
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    ],
)
def test_unsigned_and_streaming_payloads_are_refused(declared: str) -> None:
    headers = sign(CAPTURED_BODY, content_sha256=declared)
    assert refusal(verify(headers, CAPTURED_BODY)) == HASH_MISMATCH


@pytest.mark.parametrize(
    "declared",
    [sha256(b"another body"), sha256(CAPTURED_BODY).upper(), sha256(CAPTURED_BODY)[:-1], ""],
    ids=["other-body", "upper-case", "truncated", "empty"],
)
def test_a_declared_hash_that_is_not_the_bodys_is_refused(declared: str) -> None:
    headers = sign(CAPTURED_BODY, content_sha256=declared)
    assert refusal(verify(headers, CAPTURED_BODY)) == HASH_MISMATCH


def test_a_repeated_content_hash_header_is_refused() -> None:
    headers = sign(CAPTURED_BODY, content_sha256=sha256(CAPTURED_BODY))
    headers.append(("x-amz-content-sha256", sha256(CAPTURED_BODY)))
    assert refusal(verify(headers, CAPTURED_BODY)) == HASH_MISMATCH


def test_the_canonical_request_hashes_the_body_not_the_declared_hash() -> None:
    lowered = {"host": [HOST], "x-amz-content-sha256": [sha256(b"another body")]}
    canonical = canonical_request("POST", PATH, "", lowered, ["host"], CAPTURED_BODY)
    assert canonical.rsplit("\n", 1)[1] == sha256(CAPTURED_BODY)


def test_the_clock_may_be_off_by_the_skew_in_either_direction() -> None:
    headers = sign(CAPTURED_BODY)
    at = signed_at(headers)
    for now in (at - MAX_CLOCK_SKEW, at, at + MAX_CLOCK_SKEW):
        assert verify(headers, CAPTURED_BODY, now=now) == PRINCIPAL


def test_a_signature_from_the_past_beyond_the_skew_is_expired() -> None:
    headers = sign(CAPTURED_BODY)
    at = signed_at(headers)
    amz_date = next(value for name, value in headers if name.lower() == "x-amz-date")
    message = refusal(verify(headers, CAPTURED_BODY, now=at + MAX_CLOCK_SKEW + 1))
    assert message.startswith(f"Signature expired: {amz_date} is now earlier than ")
    assert message.endswith(" - 5 min.)")
    assert refusal(verify(headers, CAPTURED_BODY, now=at + 86_400)).startswith("Signature expired")


def test_a_signature_dated_in_the_future_beyond_the_skew_is_not_yet_current() -> None:
    headers = sign(CAPTURED_BODY)
    at = signed_at(headers)
    amz_date = next(value for name, value in headers if name.lower() == "x-amz-date")
    message = refusal(verify(headers, CAPTURED_BODY, now=at - MAX_CLOCK_SKEW - 1))
    assert message.startswith(f"Signature not yet current: {amz_date} is still later than ")
    assert message.endswith(" + 5 min.)")
    # A signature made for next year is no more usable today.
    assert refusal(verify(headers, CAPTURED_BODY, now=at - 366 * 86_400)).startswith(
        "Signature not yet current"
    )


def test_the_skew_messages_name_the_window_as_aws_does() -> None:
    headers = sign(CAPTURED_BODY)
    at = signed_at(headers)
    amz_date = next(value for name, value in headers if name.lower() == "x-amz-date")
    now = at + 3600
    expected = (
        f"Signature expired: {amz_date} is now earlier than "
        f"{stamp(now - MAX_CLOCK_SKEW)} ({stamp(now)} - 5 min.)"
    )
    assert refusal(verify(headers, CAPTURED_BODY, now=now)) == expected
    now = at - 3600
    expected = (
        f"Signature not yet current: {amz_date} is still later than "
        f"{stamp(now + MAX_CLOCK_SKEW)} ({stamp(now)} + 5 min.)"
    )
    assert refusal(verify(headers, CAPTURED_BODY, now=now)) == expected


def stamp(moment: float) -> str:
    return strftime("%Y%m%dT%H%M%SZ", gmtime(moment))
