"""Search: the blind-index token indexes of the table, and the API's right to query them only."""

from __future__ import annotations

from typing import Any

import pytest

from vault.common.blind_index import SEARCHABLE_FIELDS
from vault.infra import table as table_def

from .helpers import as_list, only, statements
from .support import Synthesized


@pytest.fixture(scope="module")
def api(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("api"))


def test_one_keys_only_index_per_searchable_field(api: dict[str, Any]) -> None:
    table = only(api, "AWS::DynamoDB::GlobalTable")
    indexes = sorted(table["GlobalSecondaryIndexes"], key=lambda index: index["IndexName"])
    assert indexes == sorted(
        (
            {
                "IndexName": f"ix_{name}",
                "KeySchema": [{"AttributeName": f"_ix_{name}", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
            for name in SEARCHABLE_FIELDS
        ),
        key=lambda index: index["IndexName"],
    )


def test_the_emulator_table_has_the_same_indexes(api: dict[str, Any]) -> None:
    """One definition: what the emulator creates (create_table_kwargs) is what the stack deploys."""
    deployed = only(api, "AWS::DynamoDB::GlobalTable")["GlobalSecondaryIndexes"]
    local = table_def.create_table_kwargs("t")["GlobalSecondaryIndexes"]
    key = lambda index: index["IndexName"]  # noqa: E731
    assert sorted(deployed, key=key) == sorted(local, key=key)


def test_the_function_may_query_the_token_indexes_and_nothing_else(api: dict[str, Any]) -> None:
    policy = only(api, "AWS::IAM::Policy")
    # Besides the audit route's Query on log partitions (tests/cdk/test_api.py).
    [query] = [
        s
        for s in statements(policy["PolicyDocument"])
        if "dynamodb:Query" in as_list(s["Action"]) and s.get("Sid") != "ReadAuditLogs"
    ]
    assert as_list(query["Action"]) == ["dynamodb:Query"]
    resources = as_list(query["Resource"])
    assert len(resources) == len(SEARCHABLE_FIELDS)
    # Each {"Fn::Join": ["", [<table arn>, "/index/ix_<name>"]]}.
    suffixes = sorted(resource["Fn::Join"][1][-1] for resource in resources)
    assert suffixes == sorted(f"/index/ix_{name}" for name in SEARCHABLE_FIELDS)


def test_the_function_indexes_searchable_fields(api: dict[str, Any]) -> None:
    function = only(api, "AWS::Lambda::Function")
    assert function["Environment"]["Variables"]["SEARCH_INDEX"] == "on"
