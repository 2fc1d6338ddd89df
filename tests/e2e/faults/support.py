"""Helpers of the fault tests: timed API calls and a direct view of the vault table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.daemon.state import EmulatorState
from emulator.faults.catalogue import CATALOGUE, FaultController
from emulator.tools.client import VaultApiError
from vault.infra.table import KEY_SEPARATOR, LOG_PREFIX, VAULT_PREFIX, log_partition, vault_key

#: Every faulty request must be answered well within the gateway's 10 s integration
#: timeout; this is a correctness bound (the API's own deadlines hold), not a performance target.
ANSWER_BOUND = 10.0
HEALTH_WAIT = 30.0
PII = {"first_name": "Ada", "last_name": "Lovelace", "dob": "1990-12-10", "ssn9": "123456789"}


@dataclass
class Timed:
    seconds: float
    value: Any = None
    error: VaultApiError | None = None


def timed(call: Callable[[], Any]) -> Timed:
    began = time.monotonic()
    try:
        value = call()
    except VaultApiError as exc:
        return Timed(time.monotonic() - began, error=exc)
    return Timed(time.monotonic() - began, value=value)


def expect_error(
    call: Callable[[], Any], status: int, code: str, bound: float = ANSWER_BOUND
) -> VaultApiError:
    """``call`` fails with the API's ``status``/``code`` (not the gateway's) inside ``bound`` seconds."""
    outcome = timed(call)
    assert outcome.error is not None, f"expected {status} {code}, got success {outcome.value!r}"
    error = outcome.error
    assert (error.status, error.code) == (status, code), f"{error} (after {outcome.seconds:.2f} s)"
    assert isinstance(error.body, dict) and error.body.get("statusCode") == status, error.body
    assert outcome.seconds < bound, f"answered after {outcome.seconds:.2f} s (bound {bound} s)"
    return error


def documented(fault: str, status: int, code: str | None) -> None:
    """The answer asserted by a test is the one the catalogue documents for ``fault``."""
    answers = {(answer.status, answer.code) for answer in CATALOGUE[fault].spec.answers}
    assert (status, code) in answers, f"{fault}: {status} {code} is not in the catalogue: {answers}"


class Table:
    """The vault table read straight from the backend (past the DynamoDB fault proxy)."""

    def __init__(self, stack: EmulatorState) -> None:
        import boto3

        facts = stack.facts
        self.name = facts["table_name"]
        self._client = boto3.client(
            "dynamodb",
            endpoint_url=facts["dynamodb_endpoint"],
            region_name=facts["region"],
            aws_access_key_id=facts["backend_access_key_id"],
            aws_secret_access_key=facts["backend_secret_access_key"],
        )

    def vault(self, vault_id: str) -> dict[str, Any] | None:
        reply = self._client.get_item(TableName=self.name, Key=vault_key(vault_id), ConsistentRead=True)
        item: dict[str, Any] | None = reply.get("Item")
        return item

    def audit(self, vault_id: str) -> list[tuple[str, str | None]]:
        """(event, outcome) of the vault's audit records, oldest first."""
        items = self._query(log_partition(vault_id))
        items.sort(key=lambda item: item["sk"]["S"])
        return [(item["_e"]["S"], item.get("_o", {}).get("S")) for item in items]

    def _query(self, partition: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": partition}},
            "ConsistentRead": True,
        }
        for _ in range(100):
            page = self._client.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    def counts(self) -> dict[str, int]:
        """How many vault items and audit records the table holds (a failed write adds neither)."""
        counts = {VAULT_PREFIX: 0, LOG_PREFIX: 0}
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "ProjectionExpression": "pk",
            "ConsistentRead": True,
        }
        for _ in range(1000):
            page = self._client.scan(**kwargs)
            for item in page.get("Items", []):
                prefix = item["pk"]["S"].split(KEY_SEPARATOR, 1)[0]
                # Deployment-wide items (the blind-index configuration, made on first use) are
                # neither vaults nor audit records.
                if prefix in counts:
                    counts[prefix] += 1
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return counts


def unchanged_pids(before: dict[str, list[int]], after: dict[str, list[int]], touched: set[str]) -> None:
    """Every component but ``touched`` still runs as the same processes: nothing else restarted."""
    changed = {
        name: (pids, after.get(name))
        for name, pids in before.items()
        if name not in touched and pids != after.get(name)
    }
    assert not changed, f"restarted: {changed}"


def wait_healthy(controller: FaultController, timeout: float = HEALTH_WAIT) -> None:
    """Every component of the emulator reports healthy (within ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    unhealthy: list[str] = []
    while time.monotonic() < deadline:
        unhealthy = [name for name, ok in controller.health().items() if not ok]
        if not unhealthy:
            return
        time.sleep(0.2)
    raise AssertionError(f"components unhealthy: {unhealthy}")
