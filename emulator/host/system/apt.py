"""Installing Debian packages with apt-get, only those not installed yet."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from emulator.host.progress import step
from emulator.host.system.errors import SystemSetupError

#: Another apt-get (a colleague's, unattended upgrades) may hold the dpkg lock for a while.
_LOCK_TIMEOUT_SECONDS = 600
_INSTALL_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class AptResult:
    installed: tuple[str, ...]
    already_present: tuple[str, ...]
    seconds: float


def is_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${db:Status-Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "installed"


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def _apt_get(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={_LOCK_TIMEOUT_SECONDS}", *arguments]
    return subprocess.run(
        command, capture_output=True, text=True, env=_apt_env(), timeout=_INSTALL_TIMEOUT_SECONDS, check=False
    )


def ensure_packages(packages: Sequence[str]) -> AptResult:
    """Install whichever of ``packages`` are missing (``apt-get update`` first, as a fresh machine needs)."""
    began = time.monotonic()
    missing = tuple(package for package in packages if not is_installed(package))
    present = tuple(package for package in packages if package not in missing)
    if not missing:
        return AptResult((), present, time.monotonic() - began)
    if os.geteuid() != 0:
        raise SystemSetupError(
            f"installing {' '.join(missing)} needs root: run this as root, or "
            f"`sudo apt-get install {' '.join(missing)}` yourself"
        )
    with step("apt-get update"):
        update = _apt_get("update", "-q")
    if update.returncode != 0:
        raise SystemSetupError(f"apt-get update failed:\n{update.stderr.strip()}")
    with step(f"apt-get install {' '.join(missing)}"):
        install = _apt_get("install", "-y", "-q", "--no-install-recommends", *missing)
    if install.returncode != 0:
        raise SystemSetupError(f"apt-get install {' '.join(missing)} failed:\n{install.stderr.strip()}")
    return AptResult(missing, present, time.monotonic() - began)
