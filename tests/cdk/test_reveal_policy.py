"""``vault:revealPolicy``: a JSON file, validated at synth, deployed as the API's ``REVEAL_POLICY``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from vault_cdk.config import MAX_REVEAL_POLICY_BYTES, ConfigError, load_config

from vault.api.reveal_policy import POLICY_ENV, RevealPolicy

from .helpers import only
from .support import Synthesized, app_context, synthesize

POLICY: dict[str, Any] = {
    "version": 1,
    "expressions": {"age": {"text": "date(dob).age()", "inputs": ["dob"]}},
    "rules": [
        {
            "id": "support",
            "principals": ["arn:aws:iam::*:role/vault-support"],
            "reasons": ["ticket *"],
            "fields": ["SSN4"],
            "expressions": ["age"],
        },
        {"id": "analytics", "principals": ["arn:aws:iam::*:role/vault-analytics"], "expressions": ["age"]},
    ],
}


def _write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "reveal-policy.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2))
    return path


def _env(synthesized: Synthesized) -> dict[str, str]:
    function = only(synthesized.raw("api"), "AWS::Lambda::Function")
    return dict(function["Environment"]["Variables"])


def test_the_policy_reaches_the_function_as_the_api_reads_it(tmp_path: Path) -> None:
    path = _write(tmp_path, POLICY)
    env = _env(synthesize(tmp_path, nag=False, **{"vault:revealPolicy": str(path)}))
    deployed = env[POLICY_ENV]
    # Compact, and the same decisions as the file.
    assert "\n" not in deployed
    policy = RevealPolicy.from_json(deployed)
    assert policy == RevealPolicy.from_json(path.read_text())
    support = "arn:aws:sts::123456789012:assumed-role/vault-support/s"
    assert policy.allowance(support, "ticket 1").fields == {"ssn4"}


def test_without_the_key_there_is_no_policy(vault: Synthesized) -> None:
    assert POLICY_ENV not in _env(vault)


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("not json", "not JSON"),
        ({**POLICY, "version": 3}, "version"),
        ({**POLICY, "rules": [{**POLICY["rules"][0], "fields": ["salary"]}]}, "salary"),
        ({**POLICY, "rules": [{**POLICY["rules"][0], "expressions": ["missing"]}]}, "missing"),
    ],
)
def test_an_invalid_policy_stops_synth_naming_the_key(tmp_path: Path, document: Any, where: str) -> None:
    path = _write(tmp_path, document)
    with pytest.raises(ConfigError, match=rf"vault:revealPolicy.*{where}"):
        load_config(app_context(tmp_path, **{"vault:revealPolicy": str(path)}))


def test_a_missing_or_oversized_policy_stops_synth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vault:revealPolicy: cannot read"):
        load_config(app_context(tmp_path, **{"vault:revealPolicy": str(tmp_path / "absent.json")}))
    rules = [
        {"id": f"r{i}", "principals": [f"arn:aws:iam::*:role/vault-role-{i:04d}"], "fields": ["ssn4"]}
        for i in range(MAX_REVEAL_POLICY_BYTES // 40)
    ]
    path = _write(tmp_path, {"version": 1, "rules": rules})
    with pytest.raises(ConfigError, match="at most"):
        load_config(app_context(tmp_path / "big", **{"vault:revealPolicy": str(path)}))
