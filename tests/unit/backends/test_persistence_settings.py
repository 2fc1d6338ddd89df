"""``persist`` on LocalStack: its settings, its volume, and the key store that recreates lost keys."""

from __future__ import annotations

import base64
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from emulator.aws.backends import (
    KEY_STORE_NAME,
    AwsBackend,
    BackendConfig,
    BackendError,
    KeyMaterialStore,
    provision,
)
from emulator.aws.backends.localstack_container import CONTAINER_VOLUME, LocalStackContainerBackend
from emulator.aws.backends.localstack_host import LocalStackHostBackend
from emulator.aws.backends.provision import CUSTOM_ID_TAG, CUSTOM_KEY_MATERIAL_TAG

TABLE = "vault-settings-unit"


def test_localstack_host_keeps_its_data_directory_and_dynamodb_on_disk(tmp_path: Path) -> None:
    backend = LocalStackHostBackend(BackendConfig(kind="localstack", state_dir=tmp_path, persist=True))
    env = backend.environment(4566)
    assert env["PERSISTENCE"] == "1"
    # Without DYNAMODB_IN_MEMORY, LocalStack runs DynamoDB Local with -dbPath <data>/dynamodb.
    assert "DYNAMODB_IN_MEMORY" not in env
    root = Path(env["FILESYSTEM_ROOT"])
    # LocalStack's host-mode data directory under PERSISTENCE=1, inside the state directory.
    assert backend.data_dir == root / "var/lib/localstack/state"
    assert backend.data_dir.is_relative_to(tmp_path)


def test_localstack_host_without_persist_is_in_memory(tmp_path: Path) -> None:
    env = LocalStackHostBackend(BackendConfig(kind="localstack", state_dir=tmp_path)).environment(4566)
    assert env["DYNAMODB_IN_MEMORY"] == "1"
    assert "PERSISTENCE" not in env


def test_an_extra_environment_still_wins(tmp_path: Path) -> None:
    config = BackendConfig(kind="localstack", state_dir=tmp_path, persist=True)
    settings = type(config.localstack)(extra_env={"PERSISTENCE": "0"})
    backend = LocalStackHostBackend(
        BackendConfig(kind="localstack", state_dir=tmp_path, persist=True, localstack=settings)
    )
    assert backend.environment(4566)["PERSISTENCE"] == "0"


def test_the_container_mounts_a_volume_in_the_state_directory(tmp_path: Path) -> None:
    persisting = LocalStackContainerBackend(
        BackendConfig(kind="localstack-container", state_dir=tmp_path, persist=True)
    )
    assert persisting.persistence_environment()["PERSISTENCE"] == "1"
    assert persisting.volume_dir == tmp_path / "localstack-volume"
    assert CONTAINER_VOLUME == "/var/lib/localstack"
    plain = LocalStackContainerBackend(BackendConfig(kind="localstack-container", state_dir=tmp_path))
    assert plain.persistence_environment() == {}


# -- the key store, against a backend that honours LocalStack's custom-key tags --------------


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Operation")


@dataclass
class _FakeKms:
    """KMS as LocalStack answers it: CreateKey takes its id from ``_custom_id_``."""

    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)

    def describe_key(self, KeyId: str) -> dict[str, Any]:
        key_id = self.aliases.get(KeyId, KeyId)
        if key_id not in self.keys:
            raise _client_error("NotFoundException")
        return {"KeyMetadata": self.keys[key_id]}

    def create_key(self, **arguments: Any) -> dict[str, Any]:
        self.created.append(arguments)
        tags = {tag["TagKey"]: tag["TagValue"] for tag in arguments.get("Tags", [])}
        key_id = tags.get(CUSTOM_ID_TAG, f"generated-{len(self.created)}")
        metadata = {"KeyId": key_id, "Arn": f"arn:aws:kms:us-east-1:123456789012:key/{key_id}"}
        self.keys[key_id] = metadata
        return {"KeyMetadata": metadata}

    def create_alias(self, AliasName: str, TargetKeyId: str) -> None:
        self.aliases[AliasName] = TargetKeyId


class _FakeDynamoDB:
    def create_table(self, **_: Any) -> None:
        return None

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"TableStatus": "ACTIVE", "TableArn": f"arn:aws:dynamodb:::table/{TableName}"}}


class _FakeLocalStack(AwsBackend):
    """A restart is a new instance: its KMS has lost every key, as LocalStack's free edition does."""

    accepts_custom_key_material = True

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.kms = _FakeKms()
        self.dynamodb = _FakeDynamoDB()

    def _start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def pids(self) -> list[int]:
        return []

    @property
    def endpoint_url(self) -> str:
        return "http://127.0.0.1:1"

    def client(self, service: str, config: BotoConfig | None = None) -> Any:
        return self.kms if service == "kms" else self.dynamodb


def test_a_lost_key_is_recreated_with_its_id_and_material(tmp_path: Path) -> None:
    store = KeyMaterialStore(tmp_path / KEY_STORE_NAME)
    first_run = _FakeLocalStack(BackendConfig(kind="localstack", state_dir=tmp_path))
    first = provision(first_run, TABLE, key_store=store)
    tags = {tag["TagKey"]: tag["TagValue"] for tag in first_run.kms.created[0]["Tags"]}
    assert tags[CUSTOM_ID_TAG] == first.key_id
    assert len(base64.b64decode(tags[CUSTOM_KEY_MATERIAL_TAG])) == 32
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    # Provisioning the same run again reuses the alias and creates nothing.
    assert provision(first_run, TABLE, key_store=store) == first
    assert len(first_run.kms.created) == 1

    second_run = _FakeLocalStack(BackendConfig(kind="localstack", state_dir=tmp_path))
    second = provision(second_run, TABLE, key_store=store)
    assert second == first
    assert second_run.kms.created[0]["Tags"] == first_run.kms.created[0]["Tags"]


def test_the_store_is_ignored_where_the_backend_keeps_its_own_keys(tmp_path: Path) -> None:
    store = KeyMaterialStore(tmp_path / KEY_STORE_NAME)

    class _KeepsKeys(_FakeLocalStack):
        accepts_custom_key_material = False

    backend = _KeepsKeys(BackendConfig(kind="moto", state_dir=tmp_path))
    provision(backend, TABLE, key_store=store)
    assert "Tags" not in backend.kms.created[0]
    assert not store.path.exists()


def test_a_damaged_store_is_refused_with_the_way_out(tmp_path: Path) -> None:
    store = KeyMaterialStore(tmp_path / KEY_STORE_NAME)
    store.path.write_text('{"alias/nitro-vault": {"key_id": "k"}}', encoding="utf-8")
    with pytest.raises(BackendError, match="vault-emulator reset"):
        provision(
            _FakeLocalStack(BackendConfig(kind="localstack", state_dir=tmp_path)), TABLE, key_store=store
        )
