"""The Debian mirror this machine's apt already uses (no registry host is hard-coded)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emulator.host.system.errors import SystemSetupError

APT_DIR = Path("/etc/apt")
OS_RELEASE = Path("/etc/os-release")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def debian_codename(os_release: Path = OS_RELEASE) -> str:
    """``VERSION_CODENAME`` of the running system (e.g. ``bookworm``)."""
    try:
        lines = os_release.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SystemSetupError(f"cannot read {os_release}: {exc}") from exc
    for line in lines:
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise SystemSetupError(f"{os_release} names no VERSION_CODENAME")


def _one_line_sources(text: str) -> Iterator[AptSource]:
    """``deb [options] URI SUITE COMPONENT...`` lines (``sources.list`` and ``*.list``)."""
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            yield AptSource(words[0], (words[1],), tuple(words[2:]))


def _deb822_sources(text: str) -> Iterator[AptSource]:
    """Stanzas of ``*.sources`` files (``Types:``, ``URIs:``, ``Suites:``, ``Components:``)."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield AptSource(
                uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split())
            )


def apt_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled binary source, in the order apt reads them."""
    sources: list[AptSource] = []
    main_list = apt_dir / "sources.list"
    if main_list.is_file():
        sources.extend(_one_line_sources(main_list.read_text(encoding="utf-8")))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        # apt reads only these two suffixes; "*.disabled" and the like are ignored, as here.
        for part in sorted(parts.iterdir()):
            if part.suffix == ".list":
                sources.extend(_one_line_sources(part.read_text(encoding="utf-8")))
            elif part.suffix == ".sources":
                sources.extend(_deb822_sources(part.read_text(encoding="utf-8")))
    return sources


def debian_mirror(suite: str, apt_dir: Path = APT_DIR) -> str:
    """The first configured mirror that serves ``suite`` with its ``main`` component."""
    for source in apt_sources(apt_dir):
        if (
            suite in source.suites
            and "main" in source.components
            and source.uri.startswith(("http", "file:"))
        ):
            return source.uri
    raise SystemSetupError(
        f"no apt source under {apt_dir} serves '{suite} main'; name a mirror explicitly (--mirror)"
    )
