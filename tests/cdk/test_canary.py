"""The identity canaries (spec 7.6): decrypt from outside an enclave must keep failing."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import only, resources, statements
from .support import Synthesized


@pytest.fixture(scope="module")
def canary(vault: Synthesized) -> dict[str, Any]:
    return dict(vault.raw("canary"))


def test_two_scheduled_functions(canary: dict[str, Any]) -> None:
    functions = [f["Properties"] for f in resources(canary, "AWS::Lambda::Function").values()]
    assert sorted(f["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] for f in functions) == [
        "canary_no_vpc",
        "canary_vpc",
    ]
    assert sorted("VpcConfig" in f for f in functions) == [False, True]
    assert all(f["ReservedConcurrentExecutions"] == 1 and f["Architectures"] == ["arm64"] for f in functions)
    schedules = [s["Properties"] for s in resources(canary, "AWS::Scheduler::Schedule").values()]
    assert [s["ScheduleExpression"] for s in schedules] == ["rate(1 minute)", "rate(1 minute)"]


def test_canaries_hold_an_iam_grant_the_key_policy_ignores(canary: dict[str, Any]) -> None:
    for policy in resources(canary, "AWS::IAM::Policy").values():
        actions = [
            a
            for s in statements(policy["Properties"]["PolicyDocument"])
            for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        ]
        if "dynamodb:Scan" in actions:
            assert "kms:Decrypt" in actions


def test_alarms_fire_on_success_or_silence(canary: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in resources(canary, "AWS::CloudWatch::Alarm").values()]
    assert len(alarms) == 2
    for alarm in alarms:
        assert alarm["MetricName"] == "DecryptSuccess" and alarm["Namespace"] == "NitroVault"
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "breaching"
        assert alarm["AlarmActions"] and alarm["OKActions"] and alarm["InsufficientDataActions"]


def test_topic_is_encrypted_and_only_alarms_publish(canary: dict[str, Any]) -> None:
    topic = only(canary, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic
    policy = only(canary, "AWS::SNS::TopicPolicy")["PolicyDocument"]
    by_sid = {s.get("Sid"): s for s in statements(policy)}
    assert by_sid["AlarmsOnly"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert len(by_sid["AlarmsOnly"]["Condition"]["ArnEquals"]["aws:SourceArn"]) == 2
    assert by_sid["IdentityPerimeter"]["Effect"] == "Deny"
    assert any(
        s["Effect"] == "Deny" and "aws:SecureTransport" in str(s.get("Condition")) for s in statements(policy)
    )
