"""The moto backend: start, provision, DynamoDB transactions, clean stop."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import moto
import moto.backends
import pytest
import requests
from botocore.exceptions import ClientError

from emulator.aws.backends import AwsBackend, BackendConfig, BackendError, provision, start_backend
from emulator.aws.backends.moto_dispatch import install as install_module_list_cache
from vault.infra.table import PARTITION_KEY, SORT_KEY, create_table_kwargs

TABLE = "vault-unit"
POLICY = {"Version": "2012-10-17", "Statement": []}


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[AwsBackend]:
    with start_backend(BackendConfig(kind="moto", state_dir=tmp_path)) as started:
        yield started


def test_starts_on_loopback_in_under_a_second(tmp_path: Path) -> None:
    began = time.monotonic()
    with start_backend(BackendConfig(kind="moto", state_dir=tmp_path)) as backend:
        elapsed = time.monotonic() - began
        assert elapsed < 1.0
        assert urlsplit(backend.endpoint_url).hostname == "127.0.0.1"
        assert backend.dynamodb_endpoint_url == backend.kms_endpoint_url == backend.endpoint_url
        assert backend.health()
        assert backend.pids() == []
        row = backend.describe()
        assert row["kind"] == "moto"
        assert row["endpoint_url"] == backend.endpoint_url
        assert row["started_seconds"] is not None and row["started_seconds"] < 1.0


def test_serves_sts_for_the_configured_account(backend: AwsBackend) -> None:
    assert backend.client("sts").get_caller_identity()["Account"] == backend.config.account_id


def test_provision_creates_the_vault_table_and_root_key(backend: AwsBackend) -> None:
    resources = provision(backend, TABLE, key_policy=POLICY)

    table = backend.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == create_table_kwargs(TABLE)["KeySchema"]
    assert resources.table_arn == table["TableArn"]

    kms = backend.client("kms")
    metadata = kms.describe_key(KeyId=resources.key_alias)["KeyMetadata"]
    assert metadata["KeyId"] == resources.key_id
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["Enabled"] is True
    # moto misapplies Deny statements, so the policy stays with the KMS front only.
    assert resources.key_policy_attached is False


def test_provision_is_idempotent(backend: AwsBackend) -> None:
    first = provision(backend, TABLE)
    second = provision(backend, TABLE)
    assert second == first


def test_provision_rejects_an_alias_without_prefix(backend: AwsBackend) -> None:
    with pytest.raises(ValueError, match="alias/"):
        provision(backend, TABLE, key_alias="nitro-vault")


def _item(pk: str, value: str) -> dict[str, dict[str, str]]:
    return {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": "v0"}, "value": {"S": value}}


def test_transact_write_items_is_atomic_with_conditions(backend: AwsBackend) -> None:
    provision(backend, TABLE)
    dynamodb = backend.client("dynamodb")
    absent = "attribute_not_exists(pk)"
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": _item("VAULT##a", "1"), "ConditionExpression": absent}},
            {"Put": {"TableName": TABLE, "Item": _item("LOG##a", "1"), "ConditionExpression": absent}},
        ]
    )
    with pytest.raises(ClientError) as failure:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": TABLE, "Item": _item("VAULT##b", "2"), "ConditionExpression": absent}},
                {"Put": {"TableName": TABLE, "Item": _item("VAULT##a", "2"), "ConditionExpression": absent}},
            ]
        )
    error = failure.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = [reason["Code"] for reason in error["CancellationReasons"]]
    assert reasons == ["None", "ConditionalCheckFailed"]
    keys = {PARTITION_KEY: {"S": "VAULT##b"}, SORT_KEY: {"S": "v0"}}
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key=keys)
    kept = dynamodb.get_item(TableName=TABLE, Key={PARTITION_KEY: {"S": "VAULT##a"}, SORT_KEY: {"S": "v0"}})
    assert kept["Item"]["value"] == {"S": "1"}


def test_symmetric_key_encrypts_and_decrypts(backend: AwsBackend) -> None:
    resources = provision(backend, TABLE)
    kms = backend.client("kms")
    context = {"vault_id": "v1"}
    blob = kms.encrypt(KeyId=resources.key_alias, Plaintext=b"secret", EncryptionContext=context)
    plain = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext=context)
    assert plain["Plaintext"] == b"secret"


def test_stop_releases_the_port_and_is_idempotent(tmp_path: Path) -> None:
    backend = start_backend(BackendConfig(kind="moto", state_dir=tmp_path))
    port = _port(backend.endpoint_url)
    assert _connects(port)
    backend.stop()
    assert not _connects(port)
    # No listener holds the port: a server can bind it at once (SO_REUSEADDR, as servers do,
    # because connections the stopped server closed may linger in TIME_WAIT).
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
    backend.stop()
    assert not backend.health()
    with pytest.raises(BackendError):
        _ = backend.endpoint_url


def test_context_manager_stops(tmp_path: Path) -> None:
    with start_backend(BackendConfig(kind="moto", state_dir=tmp_path)) as backend:
        port = _port(backend.endpoint_url)
    assert not _connects(port)


def test_describe_is_json_serialisable(backend: AwsBackend) -> None:
    json.dumps(backend.describe())


def test_refuses_an_account_moto_does_not_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    with pytest.raises(BackendError, match="MOTO_ACCOUNT_ID"):
        start_backend(BackendConfig(kind="moto", state_dir=tmp_path, account_id="111122223333"))


def test_module_list_is_scanned_once_and_unchanged(backend: AwsBackend) -> None:
    cached = moto.backends.list_of_moto_modules
    install_module_list_cache()  # idempotent: the backend installed it already
    assert moto.backends.list_of_moto_modules is cached
    package = os.path.dirname(moto.__file__)
    scanned = sorted(
        name
        for name in os.listdir(package)
        if os.path.isdir(os.path.join(package, name)) and not name.startswith("__")
    )
    assert list(cached()) == scanned and "dynamodb" in scanned and "kms" in scanned


def test_the_port_refuses_requests_not_signed_with_the_runs_secret(backend: AwsBackend) -> None:
    """The attack: a local process that finds moto's port asks it for the vault key's plaintext."""
    kms = backend.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"vault private key")["CiphertextBlob"]
    # The backend's own credentials (from the 0600 state file) work.
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"vault private key"
    assert backend.secret_access_key != "test" and len(backend.secret_access_key) >= 32

    for secret in ("test", backend.secret_access_key[:-1] + "x"):
        guessing = boto3.client(
            "kms",
            endpoint_url=backend.endpoint_url,
            region_name=backend.region,
            aws_access_key_id=backend.access_key_id,
            aws_secret_access_key=secret,
        )
        with pytest.raises(ClientError) as refused:
            guessing.decrypt(CiphertextBlob=blob)
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
        with pytest.raises(ClientError):
            guessing.list_keys()

    # Unsigned: neither the service nor moto's own pages (state dump, reset).
    for method, path in (("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset"), ("POST", "/")):
        response = requests.request(method, backend.endpoint_url + path, timeout=5)
        assert response.status_code == 403, path
        assert b"vault private key" not in response.content
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"vault private key"  # not reset
    dynamodb = backend.client("dynamodb")
    dynamodb.list_tables()
