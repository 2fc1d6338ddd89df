"""Small readers over synthesized CloudFormation templates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CDK_DIR = Path(__file__).resolve().parents[2] / "cdk"


def resources(template: Mapping[str, Any], kind: str) -> dict[str, Mapping[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def only(template: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from as_list(document.get("Statement", []))


def scan_templates(outdir: Path) -> None:
    """Run cfn-lint and checkov as ``nox -s cdk`` does, over every template in ``outdir``."""
    templates = sorted(str(path) for path in outdir.glob("*.template.json"))
    assert templates, f"no templates in {outdir}"
    scripts = Path(sys.executable).parent
    commands = (
        [str(scripts / "cfn-lint"), "--config-file", str(CDK_DIR / ".cfnlintrc"), "--", *templates],
        [
            str(scripts / "checkov"),
            "--config-file",
            str(CDK_DIR / ".checkov.yaml"),
            *(arg for path in templates for arg in ("-f", path)),
        ],
    )
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, f"{Path(command[0]).name}:\n{result.stdout}\n{result.stderr}"
