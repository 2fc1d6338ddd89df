"""What cfn-lint and checkov (run by ``nox -s cdk``) found, fixed in the app or skipped with a reason."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from vault_cdk.config import CDK_DIR

from .helpers import as_list, only, resources, statements
from .support import ACCOUNT, Synthesized

TIERS = ("identity", "network", "key", "api", "decryption", "canary")
CHECK_ID = re.compile(r"^\s*-\s*(CKV_AWS_\d+|[EWI]\d{4})\s*$")


def _skips_with_reasons(path: Path) -> Iterator[tuple[str, str]]:
    """(check, reason) for each list entry of a scanner's config: the reason is the comment above it."""
    previous = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = CHECK_ID.match(line)
        if match:
            yield match.group(1), previous
        previous = line.strip().removeprefix("#").strip() if line.strip().startswith("#") else ""


@pytest.mark.parametrize(("name", "key"), [(".checkov.yaml", "skip-check"), (".cfnlintrc", "ignore_checks")])
def test_every_skipped_check_has_its_reason(name: str, key: str) -> None:
    path = CDK_DIR / name
    listed = yaml.safe_load(path.read_text(encoding="utf-8"))[key]
    found = dict(_skips_with_reasons(path))
    assert sorted(found) == sorted(listed)
    for check, reason in found.items():
        assert len(reason) > 40, f"{name}: {check} needs a one-line reason above it"


def test_resource_level_checkov_skips_state_reasons(vault: Synthesized) -> None:
    seen = 0
    for tier in TIERS:
        for name, resource in vault.raw(tier)["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                seen += 1
                assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), (tier, name)
                assert len(skip["comment"]) > 40, (tier, name, skip["id"])
    # The permissions boundary (a ceiling, not a grant: two checks), the TCP-passthrough NLB
    # and the API's authorizer key (asymmetric: KMS does not rotate it).
    assert seen == 4


def test_every_log_group_is_encrypted_with_the_log_key(vault: Synthesized) -> None:
    count = 0
    for tier in TIERS:
        for name, group in resources(vault.raw(tier), "AWS::Logs::LogGroup").items():
            count += 1
            key = group["Properties"].get("KmsKeyId")
            assert key is not None, f"{tier}/{name}"
            text = str(key)
            assert "LogKey" in text, f"{tier}/{name}: {text}"
    assert count == 6


def test_log_key_serves_only_this_accounts_log_groups(vault: Synthesized) -> None:
    network = vault.raw("network")
    key = only(network, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True
    (name,) = resources(network, "AWS::KMS::Key")
    assert network["Resources"][name]["DeletionPolicy"] == "Retain"
    logs = [s for s in statements(key["KeyPolicy"]) if s.get("Sid") == "CloudWatchLogsOfThisAccount"]
    assert len(logs) == 1
    condition = logs[0]["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert _joined(condition).endswith(f":logs:eu-west-1:{ACCOUNT}:log-group:*")
    assert "kms:CreateGrant" not in as_list(logs[0]["Action"])


def _joined(value: Any) -> str:
    """A string or an ``Fn::Join`` of strings and references, references written ``<Name>``."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_joined(part) for part in parts)
    return f"<{value.get('Ref', value)}>"


def _allowed(document: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    for statement in statements(document):
        if statement.get("Effect") == "Allow":
            for action in as_list(statement["Action"]):
                yield action, as_list(statement["Resource"])


def test_api_role_writes_no_network_interface_on_any_resource(vault: Synthesized) -> None:
    policies = resources(vault.raw("api"), "AWS::IAM::Policy")
    ec2_writes = [
        (action, resource)
        for policy in policies.values()
        for action, resource in _allowed(policy["Properties"]["PolicyDocument"])
        if action.startswith("ec2:") and not action.startswith("ec2:Describe")
    ]
    assert len(ec2_writes) == 4
    for action, resource in ec2_writes:
        assert resource != ["*"], action
        assert f":{ACCOUNT}:*/*" in str(resource), action


def test_scale_in_runs_one_at_a_time(vault: Synthesized) -> None:
    functions = resources(vault.raw("decryption"), "AWS::Lambda::Function")
    (scale_in,) = (f["Properties"] for name, f in functions.items() if name.startswith("ScaleInFunction"))
    assert scale_in["ReservedConcurrentExecutions"] == 1
