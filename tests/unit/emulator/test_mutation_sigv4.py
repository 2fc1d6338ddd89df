"""SigV4 refusals and canonical-request details the mutation run (``nox -s mutation``) showed no
other test pinned down: each refusal's exact status and API Gateway wording, the credential-scope
checks one by one, path normalisation and query ordering, and the signing key derivation."""

from __future__ import annotations

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.aws.sigv4 import Principal, SigV4Failure, SigV4Verifier, canonical_request, signing_key

PRINCIPAL = Principal("AKIDEMULATORTEST0001", "secret/for/tests", "arn:aws:iam::123456789012:user/tester")
HOST = "127.0.0.1:9"
BODY = b'{"fields":["city"]}'
LONG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)
SHORT_MISMATCH = "The request signature we calculated does not match the signature you provided."


def sign(
    path: str = "/v1/vaults/v_abc/decrypt",
    query: str = "",
    *,
    method: str = "POST",
    body: bytes = BODY,
    extra: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    aws = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json", **(extra or {})}
    )
    SigV4Auth(
        Credentials(PRINCIPAL.access_key_id, PRINCIPAL.secret_access_key), "execute-api", "us-east-1"
    ).add_auth(aws)
    return [("Host", HOST), *aws.headers.items()]


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next(value for key, value in headers if key.lower() == name)


def replace_header(headers: list[tuple[str, str]], name: str, value: str | None) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in headers if k.lower() != name]
    return kept if value is None else [*kept, (name, value)]


def verify(headers, path="/v1/vaults/v_abc/decrypt", query="", *, method="POST", body=BODY):
    return SigV4Verifier([PRINCIPAL], "us-east-1").verify(method, path, query, headers, body)


def test_a_valid_request_returns_the_principal():
    outcome = verify(sign())
    assert outcome == PRINCIPAL
    assert PRINCIPAL.account_id == "123456789012"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_missing_authorization(value):
    headers = replace_header(sign(), "authorization", value)
    assert verify(headers) == SigV4Failure(403, "Missing Authentication Token")


def test_malformed_authorization():
    headers = replace_header(sign(), "authorization", "AWS4-HMAC-SHA256 Credential=x")
    assert verify(headers) == SigV4Failure(
        403, "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'."
    )


def _with_credential(credential: str) -> list[tuple[str, str]]:
    headers = sign()
    auth = header(headers, "authorization")
    prefix, rest = auth.split("Credential=", 1)
    _, tail = rest.split(",", 1)
    return replace_header(headers, "authorization", f"{prefix}Credential={credential},{tail}")


def _scope(**change: str) -> str:
    headers = sign()
    date = header(headers, "x-amz-date")[:8]
    parts = {"key": PRINCIPAL.access_key_id, "date": date, "region": "us-east-1", "service": "execute-api"}
    parts.update(change)
    return f"{parts['key']}/{parts['date']}/{parts['region']}/{parts['service']}"


@pytest.mark.parametrize(
    "credential",
    [
        lambda: _scope() + "/aws4_request/extra",  # six parts, the fifth still right
        lambda: _scope() + "/aws4_other",  # five parts, the fifth wrong
        lambda: _scope(),  # four parts
    ],
    ids=["six-parts", "wrong-terminator", "four-parts"],
)
def test_credential_scope_shape(credential):
    assert verify(_with_credential(credential())) == SigV4Failure(
        403, "Credential should be scoped to a valid region."
    )


@pytest.mark.parametrize("change", [{"region": "eu-west-1"}, {"service": "kms"}], ids=["region", "service"])
def test_credential_scope_region_and_service(change):
    assert verify(_with_credential(_scope(**change) + "/aws4_request")) == SigV4Failure(
        403, "Credential should be scoped to correct service: 'execute-api'."
    )


def test_unknown_access_key():
    assert verify(_with_credential(_scope(key="AKIDUNKNOWN") + "/aws4_request")) == SigV4Failure(
        403, "The security token included in the request is invalid."
    )


@pytest.mark.parametrize("value", [None, "not-a-date"], ids=["absent", "garbled"])
def test_missing_or_garbled_date(value):
    headers = replace_header(sign(), "x-amz-date", value)
    assert verify(headers) == SigV4Failure(
        403, "Authorization header requires existence of either a 'X-Amz-Date' header."
    )


def test_date_outside_the_credential_scope():
    headers = sign()
    amz_date = header(headers, "x-amz-date")
    other_day = _scope(date="20000101") + "/aws4_request"
    tampered = replace_header(_with_credential(other_day), "x-amz-date", amz_date)
    assert verify(tampered) == SigV4Failure(
        403, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date"
    )


def _with_signed_headers(headers: list[tuple[str, str]], signed: str) -> list[tuple[str, str]]:
    auth = header(headers, "authorization")
    start = auth.index("SignedHeaders=") + len("SignedHeaders=")
    end = auth.index(",", start)
    return replace_header(headers, "authorization", auth[:start] + signed + auth[end:])


@pytest.mark.parametrize(
    "signed", ["x-amz-date", "host;x-amz-date;x-absent"], ids=["no-host", "absent-header"]
)
def test_signed_headers_must_include_host_and_exist(signed):
    assert verify(_with_signed_headers(sign(), signed)) == SigV4Failure(403, SHORT_MISMATCH)


def test_wrong_signature_gets_the_long_wording():
    headers = sign()
    auth = header(headers, "authorization")
    flipped = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    assert verify(replace_header(headers, "authorization", flipped)) == SigV4Failure(403, LONG_MISMATCH)


def test_another_secret_does_not_verify():
    other = Principal(PRINCIPAL.access_key_id, "another secret", PRINCIPAL.arn)
    outcome = SigV4Verifier([other], "us-east-1").verify("POST", "/v1/vaults/v_abc/decrypt", "", sign(), BODY)
    assert outcome == SigV4Failure(403, LONG_MISMATCH)


@pytest.mark.parametrize(
    "query",
    ["b=2&a=1", "a=1&a=0", "name=J%C3%BCrgen&x=", "z=%2F&y=a%20b"],
    ids=["unsorted", "repeated", "encoded", "slash-and-space"],
)
def test_botocore_signed_queries_verify(query):
    headers = sign("/v1/vaults", query, method="GET", body=b"")
    assert verify(headers, "/v1/vaults", query, method="GET", body=b"") == PRINCIPAL
    # The same signature does not cover another query.
    assert verify(headers, "/v1/vaults", query + "&c=3", method="GET", body=b"") == SigV4Failure(
        403, LONG_MISMATCH
    )


def test_path_is_normalised_then_encoded_once_more():
    lowered = {"host": [HOST], "x-amz-date": ["20260101T000000Z"]}
    canonical = canonical_request("GET", "/a/./b/../c//d e/", "", lowered, ["host", "x-amz-date"], b"")
    method, path, query, *_ = canonical.split("\n")
    assert (method, path, query) == ("GET", "/a/c/d%20e/", "")
    assert canonical_request("GET", "", "", lowered, ["host"], b"").split("\n")[1] == "/"
    assert canonical_request("GET", "/..", "", lowered, ["host"], b"").split("\n")[1] == "/"
    assert canonical_request("GET", "/a/b", "", lowered, ["host"], b"").split("\n")[1] == "/a/b"
    assert canonical_request("GET", "/~x/", "", lowered, ["host"], b"").split("\n")[1] == "/~x/"


def test_canonical_request_layout():
    lowered = {"host": [HOST], "x-amz-date": ["20260101T000000Z"], "x-multi": ["a  b", " c "]}
    canonical = canonical_request(
        "POST", "/p", "b=2&a=1&a=0", lowered, ["host", "x-amz-date", "x-multi"], b"body"
    )
    assert canonical == "\n".join(
        [
            "POST",
            "/p",
            "a=0&a=1&b=2",
            f"host:{HOST}\nx-amz-date:20260101T000000Z\nx-multi:a b,c\n",
            "host;x-amz-date;x-multi",
            "230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5",
        ]
    )
    raw = canonical_request("GET", "/p", "k=a b&j=%2f", lowered, ["host"], b"", raw_query_form=True).split(
        "\n"
    )[2]
    assert raw == "j=%2f&k=a b"
    encoded = canonical_request("GET", "/p", "k=a b&j=%2f&e", lowered, ["host"], b"").split("\n")[2]
    assert encoded == "e=&j=%2F&k=a%20b"


def test_signing_key_matches_the_aws_example():
    # AWS's documented derivation example (secret, 20120215, us-east-1, iam).
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize("query", ["j=%2f", "k=a=b&k=c"], ids=["lowercase-escape", "equals-in-value"])
def test_a_query_signed_as_sent_verifies_only_in_its_raw_form(query):
    # botocore signs the query as sent: re-encoding would turn %2f into %2F, a=b into a%3Db.
    headers = sign("/v1/vaults", query, method="GET", body=b"")
    assert verify(headers, "/v1/vaults", query, method="GET", body=b"") == PRINCIPAL


def test_a_query_received_unencoded_verifies_in_its_encoded_form():
    # The client signed the encoded query; the server saw the characters it stands for.
    headers = sign("/v1/vaults", "name=J%C3%BCrgen", method="GET", body=b"")
    assert verify(headers, "/v1/vaults", "name=Jürgen", method="GET", body=b"") == PRINCIPAL


def test_query_keys_are_encoded_slashes_included():
    lowered = {"host": [HOST]}
    encoded = canonical_request("GET", "/p", "a/b=c/d", lowered, ["host"], b"").split("\n")[2]
    assert encoded == "a%2Fb=c%2Fd"
