"""Finding a CPython interpreter of a minimum version (on PATH or installed by pyenv)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Highest minor version probed on PATH as ``python3.N``.
_MAX_MINOR = 20
_VERSION_SCRIPT = "import sys; print('%d.%d.%d' % sys.version_info[:3])"


class InterpreterNotFound(LookupError):
    pass


def interpreter_version(python: Path) -> tuple[int, int, int] | None:
    """The interpreter's version, or ``None`` if it does not run (e.g. a pyenv shim refusing it)."""
    try:
        result = subprocess.run(
            [str(python), "-c", _VERSION_SCRIPT], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    try:
        major, minor, micro = (int(part) for part in result.stdout.strip().split("."))
    except ValueError:
        return None
    return major, minor, micro


def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def candidates(minimum: tuple[int, int]) -> list[Path]:
    """Interpreters that may satisfy ``minimum``, not yet checked by running them."""
    found: list[Path] = []
    if sys.version_info[:2] >= minimum:
        found.append(Path(sys.executable))
    for minor in range(minimum[1], _MAX_MINOR + 1):
        on_path = shutil.which(f"python{minimum[0]}.{minor}")
        if on_path:
            found.append(Path(on_path))
    root = _pyenv_root()
    if root is not None and (root / "versions").is_dir():
        # Named versions only ("3.13.0"): other pyenv entries are virtualenvs or other implementations.
        for version_dir in sorted((root / "versions").iterdir()):
            parts = version_dir.name.split(".")
            if len(parts) == 3 and all(part.isdigit() for part in parts):
                if (int(parts[0]), int(parts[1])) >= minimum:
                    found.append(version_dir / "bin" / "python3")
    return found


def find_interpreter(
    minimum: tuple[int, int], explicit: Path | None = None
) -> tuple[Path, tuple[int, int, int]]:
    """The oldest working interpreter at least ``minimum`` (the oldest is the one best tested).

    ``explicit`` is used as given, or rejected with a reason; no other is tried then.
    """
    wanted = ".".join(map(str, minimum))
    if explicit is not None:
        version = interpreter_version(explicit)
        if version is None or version[:2] < minimum:
            raise InterpreterNotFound(f"{explicit} is not a working Python >= {wanted} (found {version})")
        return explicit, version
    working: list[tuple[tuple[int, int, int], Path]] = []
    for path in candidates(minimum):
        version = interpreter_version(path)
        if version is not None and version[:2] >= minimum:
            working.append((version, path))
    if not working:
        raise InterpreterNotFound(
            f"no Python >= {wanted} found on PATH or under pyenv; install one "
            f"(e.g. `pyenv install {wanted}`) or name it in LocalStackSettings.python"
        )
    version, path = min(working)
    return path, version
