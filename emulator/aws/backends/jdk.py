"""Finding a JDK (java and javac, version 17 or newer) for DynamoDB Local."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

#: DynamoDB Local 3 is built for Java 17.
MIN_JAVA = 17
_RELEASE_VERSION = re.compile(r'^JAVA_VERSION="(\d+)', re.MULTILINE)


class JdkNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Jdk:
    home: Path
    major: int

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"

    @property
    def javac(self) -> Path:
        return self.home / "bin" / "javac"


def _major_version(home: Path) -> int | None:
    try:
        match = _RELEASE_VERSION.search((home / "release").read_text(encoding="utf-8"))
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _home_candidates(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    java = shutil.which("java")
    if java:
        # /usr/bin/java is a chain of links (Debian alternatives) ending in <home>/bin/java.
        homes.append(Path(java).resolve().parent.parent)
    return homes


def find_jdk(explicit: Path | None = None) -> Jdk:
    problems: list[str] = []
    for home in _home_candidates(explicit):
        major = _major_version(home)
        if major is None:
            problems.append(f"{home}: no readable 'release' file")
        elif major < MIN_JAVA:
            problems.append(f"{home}: Java {major} < {MIN_JAVA}")
        elif not os.access(home / "bin" / "javac", os.X_OK):
            problems.append(f"{home}: a JRE without javac")
        else:
            return Jdk(home=home, major=major)
    detail = "; ".join(problems) if problems else "no JAVA_HOME and no java on PATH"
    raise JdkNotFound(
        f"no JDK >= {MIN_JAVA} ({detail}); install one with `python -m emulator.host.system ensure java`"
    )
