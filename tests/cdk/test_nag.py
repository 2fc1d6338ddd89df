"""cdk-nag's AwsSolutions pack: nothing unacknowledged, and every acknowledgement has a reason."""

from __future__ import annotations

from typing import Any

from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks

from .support import Synthesized

TIERS = ("identity", "network", "key", "api", "decryption", "canary")


def _violations(report: Any) -> list[str]:
    return [f"{v.rule_name}: {[r.construct_path for r in v.violating_resources]}" for v in report.violations]


def test_aws_solutions_pack_finds_nothing_unacknowledged(vault: Synthesized) -> None:
    report = AwsSolutionsChecks().validate_scope(vault.stacks.identity.node.root)
    assert report.success, _violations(report)
    assert _violations(report) == []


def test_synthesis_validation_report_is_clean(vault: Synthesized) -> None:
    for plugin in vault.validation_report().get("pluginReports", []):
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == [], plugin["pluginName"]


def test_no_error_or_warning_annotations(vault: Synthesized) -> None:
    for tier in TIERS:
        assert vault.messages(tier, "error") == [], tier
        assert vault.messages(tier, "warning") == [], tier


def test_every_acknowledgement_states_a_reason(vault: Synthesized) -> None:
    root = vault.stacks.identity.node.root
    seen = 0
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type != Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                continue
            for rule, reason in entry.data.items():
                seen += 1
                assert isinstance(reason, str) and len(reason) > 30, (construct.node.path, rule)
    assert seen > 0
