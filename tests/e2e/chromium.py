"""Headless Chromium as the browser end-to-end tests use it: one binary, one set of flags."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def headless_command(profile: str, *extra: str) -> list[str]:
    """Chromium headless, offline (no background networking, sync or updates), with ``profile``."""
    assert CHROMIUM is not None
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *extra,
    ]


@contextmanager
def temporary_profile() -> Iterator[str]:
    # Chromium's child processes may still write to the profile as it is removed.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        yield profile
