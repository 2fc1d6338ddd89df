"""Small readers over synthesized CloudFormation templates."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


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
