"""Plaintext stays inside the API request and the enclave: never in logs, the table or responses.

After one workload with canary values (see ``workload``): no log file of the emulator (API
gateway with the Lambda handler, parent, enclave, supervisor with KMS front, NSM, IMDS and
vsock-proxy, the AWS backend) contains any written value or decrypted output (decision D9);
no attribute of any DynamoDB item holds one, in any encoding; and no API response ever
carries the vault's encrypted private key, a field ciphertext or a table-internal attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.security.targets import VaultTarget
from e2e.security.workload import (
    INTERNAL_KEYS,
    RecordingSession,
    Workload,
    encodings_of_blob,
    encodings_of_text,
    find_texts,
    json_keys,
    response_json,
    run_workload,
)
from vault.infra.table import vault_key

MAX_LOG_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def workload(vault_target: VaultTarget) -> Iterator[Workload]:
    session = RecordingSession()
    with vault_target.client(session=session) as client:
        work = run_workload(client)
        yield work
        for vault_id in work.vault_ids:
            client.request("DELETE", f"/vaults/{vault_id}", json_body={"delete_all": True})


def log_files(state_dir: Path) -> list[Path]:
    """Every log the emulator writes: ``logs/`` and any ``*.log`` below the state directory."""
    found = {path for path in (state_dir / "logs").rglob("*") if path.is_file()}
    found |= {path for path in state_dir.rglob("*.log*") if path.is_file()}
    return sorted(path for path in found if path.stat().st_size <= MAX_LOG_BYTES)


def test_no_plaintext_in_any_log_file(vault_target: VaultTarget, workload: Workload) -> None:
    state = vault_target.emulator("the emulator's log files")
    files = log_files(Path(state.state_dir))
    names = {path.name for path in files}
    assert {"gateway.log", "parent.log", "enclave.log", "supervisor.log"} <= names, names
    needles = [form for value in workload.searchable() for form in encodings_of_text(value)]
    leaks: dict[str, list[str]] = {}
    mentions_workload = False
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        mentions_workload |= any(vault_id in text for vault_id in workload.vault_ids)
        found = find_texts(needles, text)
        if found:
            leaks[str(path.relative_to(state.state_dir))] = found
    # The API logs the ids of the vaults it created: these are the logs of this workload.
    assert mentions_workload, "no log mentions the workload's vaults; the scan would prove nothing"
    assert leaks == {}


def _attribute_texts(value: dict[str, Any]) -> Iterator[str | bytes]:
    for kind, item in value.items():
        if kind in ("S", "N"):
            yield str(item)
        elif kind == "B":
            yield bytes(item)
        elif kind in ("SS", "NS"):
            yield from (str(entry) for entry in item)
        elif kind == "BS":
            yield from (bytes(entry) for entry in item)
        elif kind == "L":
            for entry in item:
                yield from _attribute_texts(entry)
        elif kind == "M":
            for entry in item.values():
                yield from _attribute_texts(entry)


def scan_table(vault_target: VaultTarget) -> list[dict[str, Any]]:
    state = vault_target.emulator("the AWS backend's table")
    dynamodb = vault_target.backend_client("dynamodb", "the AWS backend's table")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": state.facts["table_name"], "ConsistentRead": True}
    for _ in range(1000):  # bounded pagination
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    raise AssertionError("the table scan did not end")


def test_no_plaintext_in_any_table_attribute(vault_target: VaultTarget, workload: Workload) -> None:
    items = scan_table(vault_target)
    live = workload.vault_ids[0]
    stored = next(item for item in items if item["pk"] == vault_key(live)["pk"])
    sealed = [name for name, value in stored.items() if not name.startswith("_") and "B" in value]
    assert len(sealed) >= 10, sorted(stored)
    needles = [form for value in workload.searchable() for form in encodings_of_text(value)]
    leaks = []
    for item in items:
        for name, value in item.items():
            for text in _attribute_texts(value):
                if isinstance(text, bytes):
                    hits = [needle for needle in needles if needle.encode("utf-8") in text]
                else:
                    hits = find_texts(needles, text)
                leaks += [(item["pk"].get("S"), name, hit) for hit in hits]
    assert leaks == []


def test_responses_never_carry_internal_attributes(workload: Workload) -> None:
    assert len(workload.responses) >= 15
    for response in workload.responses:
        body = response_json(response)
        assert INTERNAL_KEYS.isdisjoint(json_keys(body)), (response.request.method, response.url, body)


def test_responses_never_carry_the_encrypted_key_or_ciphertexts(
    vault_target: VaultTarget, workload: Workload
) -> None:
    items = {item["pk"]["S"]: item for item in scan_table(vault_target)}
    stored = items[vault_key(workload.vault_ids[0])["pk"]["S"]]
    blobs = {"_sk": bytes(stored["_sk"]["B"])}
    blobs.update(
        {
            name: bytes(value["B"])
            for name, value in stored.items()
            if not name.startswith("_") and "B" in value
        }
    )
    assert len(blobs) >= 10
    forms = {name: encodings_of_blob(blob) for name, blob in blobs.items()}
    for response in workload.responses:
        text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        for name, needles in forms.items():
            assert not [n for n in needles if n in text], (name, response.request.method, response.url)
