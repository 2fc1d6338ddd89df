"""moto's state saved on stop and restored on start (``persist``), with real moto."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import moto.backends
import pytest
from botocore.exceptions import ClientError

from emulator.aws.backends import BackendConfig, BackendError, provision, start_backend
from emulator.aws.backends.moto_server import MotoBackend
from emulator.aws.backends.moto_state import (
    PERSISTED_SERVICES,
    SNAPSHOT_NAME,
    SnapshotError,
    read_header,
    save_snapshot,
)
from vault.infra.table import PARTITION_KEY, SORT_KEY

TABLE = "vault-persist-unit"
ITEM = {PARTITION_KEY: {"S": "VAULT##p"}, SORT_KEY: {"S": "v0"}, "value": {"S": "kept"}}
MESSAGE = b"audit digest"
SIGNING: Final = "RSASSA_PSS_SHA_256"


#: An account no other test uses: moto's state is per process, and other tests' stays untouched.
ACCOUNT = "246813579024"


@pytest.fixture(autouse=True)
def own_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    forget()
    yield
    forget()


def forget() -> None:
    """Drop this account's moto state: what a new emulator process starts from."""
    for service in PERSISTED_SERVICES:
        moto.backends.get_backend(service).pop(ACCOUNT, None)  # type: ignore[call-overload]


def _config(state_dir: Path, persist: bool = True) -> BackendConfig:
    return BackendConfig(kind="moto", state_dir=state_dir, persist=persist, account_id=ACCOUNT)


def _not_found(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in {"NotFoundException", "ResourceNotFoundException"}
    return False


def test_tables_and_keys_survive_a_restart(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path)) as backend:
        first = provision(backend, TABLE)
        kms = backend.client("kms")
        backend.client("dynamodb").put_item(TableName=TABLE, Item=ITEM)
        blob = kms.encrypt(KeyId=first.key_id, Plaintext=b"secret", EncryptionContext={"v": "p"})
        signer = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        ec_signer = kms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        signature = kms.sign(KeyId=signer, Message=MESSAGE, SigningAlgorithm=SIGNING)["Signature"]
        public_key = kms.get_public_key(KeyId=ec_signer)["PublicKey"]
        policy = kms.get_key_policy(KeyId=first.key_id, PolicyName="default")["Policy"]
    assert (tmp_path / SNAPSHOT_NAME).is_file()

    forget()  # what a new process starts from
    with start_backend(_config(tmp_path, persist=False)) as empty:
        assert _not_found(lambda: empty.client("kms").describe_key(KeyId=first.key_alias))

    with start_backend(_config(tmp_path)) as backend:
        # Provisioning finds the table and the alias, so the key id stays the same.
        assert provision(backend, TABLE) == first
        kms = backend.client("kms")
        plain = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"v": "p"})
        assert plain["Plaintext"] == b"secret" and plain["KeyId"] == first.key_arn
        verified = kms.verify(KeyId=signer, Message=MESSAGE, Signature=signature, SigningAlgorithm=SIGNING)
        assert verified["SignatureValid"] is True
        assert kms.get_public_key(KeyId=ec_signer)["PublicKey"] == public_key
        assert kms.get_key_policy(KeyId=first.key_id, PolicyName="default")["Policy"] == policy
        item = backend.client("dynamodb").get_item(
            TableName=TABLE, Key={k: ITEM[k] for k in (PARTITION_KEY, SORT_KEY)}
        )
        assert item["Item"] == ITEM
        # Writes after the restore are kept by the next stop as well.
        backend.client("dynamodb").put_item(TableName=TABLE, Item={**ITEM, "value": {"S": "changed"}})

    forget()
    with start_backend(_config(tmp_path)) as backend:
        item = backend.client("dynamodb").get_item(
            TableName=TABLE, Key={k: ITEM[k] for k in (PARTITION_KEY, SORT_KEY)}
        )
        assert item["Item"]["value"] == {"S": "changed"}


def test_a_new_process_restores_the_snapshot(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path)) as backend:
        key = provision(backend, TABLE)
        blob = backend.client("kms").encrypt(KeyId=key.key_id, Plaintext=b"across processes")[
            "CiphertextBlob"
        ]
    (tmp_path / "blob").write_bytes(blob)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from emulator.aws.backends import BackendConfig, start_backend\n"
        "state = Path(sys.argv[1])\n"
        f"config = BackendConfig(kind='moto', state_dir=state, persist=True, account_id='{ACCOUNT}')\n"
        "with start_backend(config) as backend:\n"
        "    kms = backend.client('kms')\n"
        "    answer = kms.decrypt(CiphertextBlob=(state / 'blob').read_bytes())\n"
        "    alias = kms.describe_key(KeyId='alias/nitro-vault')['KeyMetadata']['KeyId']\n"
        "    print(answer['Plaintext'].decode(), alias)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["across", "processes", key.key_id]


def test_only_the_emulators_account_is_saved_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "135792468013"
    with start_backend(_config(tmp_path)) as backend:
        provision(backend, TABLE)
        monkeypatch.setenv("MOTO_ACCOUNT_ID", other)
        kms = backend.client("kms")
        kept_elsewhere = kms.create_key(Description="another account's")["KeyMetadata"]["KeyId"]
        monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    header, _ = read_header(tmp_path / SNAPSHOT_NAME)
    assert header.accounts == (ACCOUNT,)
    try:
        with start_backend(_config(tmp_path)) as backend:
            monkeypatch.setenv("MOTO_ACCOUNT_ID", other)
            # The restore left the other account's live state as it was.
            assert backend.client("kms").describe_key(KeyId=kept_elsewhere)["KeyMetadata"]["Enabled"]
            monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    finally:
        for service in PERSISTED_SERVICES:
            moto.backends.get_backend(service).pop(other, None)  # type: ignore[call-overload]


def test_without_persist_nothing_is_saved(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path, persist=False)) as backend:
        provision(backend, TABLE)
    assert not (tmp_path / SNAPSHOT_NAME).exists()


def test_the_snapshot_is_written_whole_and_private(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path)) as backend:
        provision(backend, TABLE)
        assert isinstance(backend, MotoBackend)
        header = backend.save()
    path = tmp_path / SNAPSHOT_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert header.services == ("dynamodb", "kms", "sts", "iam") and header.accounts == (ACCOUNT,)
    read, payload = read_header(path)
    assert read.payload_bytes == len(payload)


def _rewrite_header(path: Path, **changes: object) -> None:
    magic, header, payload = path.read_bytes().split(b"\n", 2)
    document = {**json.loads(header), **changes}
    path.write_bytes(magic + b"\n" + json.dumps(document).encode() + b"\n" + payload)


def test_another_moto_major_is_refused_and_the_snapshot_kept(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path)) as backend:
        provision(backend, TABLE)
    path = tmp_path / SNAPSHOT_NAME
    _rewrite_header(path, moto_version="4.2.14")
    saved = path.read_bytes()
    forget()
    with pytest.raises(BackendError, match=r"saved by moto 4\.2\.14.*vault-emulator reset"):
        start_backend(_config(tmp_path))
    # The failed start saved nothing over it.
    assert path.read_bytes() == saved


def test_a_damaged_snapshot_is_refused(tmp_path: Path) -> None:
    with start_backend(_config(tmp_path)) as backend:
        provision(backend, TABLE)
    path = tmp_path / SNAPSHOT_NAME
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SnapshotError, match="damaged"):
        start_backend(_config(tmp_path))


def test_a_snapshot_that_does_not_unpickle_names_the_versions(tmp_path: Path) -> None:
    save_snapshot(tmp_path / SNAPSHOT_NAME, (ACCOUNT,))
    path = tmp_path / SNAPSHOT_NAME
    magic, header, _ = path.read_bytes().split(b"\n", 2)
    junk = b"\x80\x05not a pickle"
    document = json.loads(header)
    document.update(payload_bytes=len(junk), payload_sha256=hashlib.sha256(junk).hexdigest())
    path.write_bytes(magic + b"\n" + json.dumps(document).encode() + b"\n" + junk)
    with pytest.raises(SnapshotError, match=r"does not load under moto .*vault-emulator reset"):
        start_backend(_config(tmp_path))


def test_a_snapshot_of_another_account_is_refused(tmp_path: Path) -> None:
    save_snapshot(tmp_path / SNAPSHOT_NAME, ("999999999999",))
    with pytest.raises(SnapshotError, match=r"holds account 999999999999.*serves account " + ACCOUNT):
        start_backend(_config(tmp_path))


def test_another_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT_NAME).write_bytes(os.urandom(64))
    with pytest.raises(SnapshotError, match="not a moto state snapshot"):
        start_backend(_config(tmp_path))
