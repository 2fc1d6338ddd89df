"""The tools the emulator and its tests use, and the Debian packages that provide them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from emulator.host.system.apt import AptResult, ensure_packages
from emulator.host.system.errors import SystemSetupError

#: Where Debian puts administrators' commands; not on every user's PATH.
_SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


@dataclass(frozen=True)
class Tool:
    name: str
    #: Commands that must all be found for the tool to count as present.
    commands: tuple[str, ...]
    #: Debian packages that provide them.
    packages: tuple[str, ...]
    purpose: str


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "docker",
            ("dockerd", "docker"),
            ("docker.io",),
            "container engine for testcontainers and sandboxes",
        ),
        Tool("java", ("java", "javac"), ("openjdk-17-jdk-headless",), "JDK for DynamoDB Local"),
        Tool("chromium", ("chromium",), ("chromium",), "headless browser for the Swagger UI checks"),
        Tool("node", ("node", "npm"), ("nodejs", "npm"), "npm, to install DynamoDB Local"),
        Tool("debootstrap", ("debootstrap",), ("debootstrap",), "builds the local Debian base image"),
    )
}


def find_command(command: str) -> str | None:
    """``command`` on PATH, or in an sbin directory (dockerd and debootstrap live there)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN_DIRS])
    return shutil.which(command, path=search)


def missing_commands(tool: Tool) -> list[str]:
    return [command for command in tool.commands if find_command(command) is None]


def ensure_tool(name: str) -> AptResult | None:
    """Install the packages of tool ``name`` if one of its commands is missing; ``None`` if none was."""
    try:
        tool = TOOLS[name]
    except KeyError:
        raise SystemSetupError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}") from None
    if not missing_commands(tool):
        return None
    result = ensure_packages(tool.packages)
    still_missing = missing_commands(tool)
    if still_missing:
        raise SystemSetupError(
            f"{', '.join(still_missing)} still missing after installing {' '.join(tool.packages)}"
        )
    return result
