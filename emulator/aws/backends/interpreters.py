"""Finding a CPython interpreter of a minimum version (on PATH, or installed by pyenv or uv)."""

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


def how_to_get(minimum: tuple[int, int]) -> str:
    """How to install an interpreter of ``minimum`` and name it (the end of every error here)."""
    wanted = ".".join(map(str, minimum))
    return (
        f"get one with `uv python install {wanted}`, `pyenv install {wanted}`, or on Ubuntu "
        f"`add-apt-repository ppa:deadsnakes/ppa && apt-get install python{wanted}`; "
        "then pass --localstack-python PATH or set VAULT_LOCALSTACK_PYTHON=PATH"
    )


def check_interpreter(python: Path, minimum: tuple[int, int]) -> tuple[int, int, int]:
    """The version of ``python`` if it runs and is at least ``minimum``; else why not."""
    wanted = ".".join(map(str, minimum))
    if not python.exists():
        reason = "it does not exist"
    elif python.is_dir():
        reason = "it is a directory (name its bin/python3)"
    elif not os.access(python, os.X_OK):
        reason = "it is not executable"
    else:
        version = interpreter_version(python)
        if version is None:
            reason = "it does not run as a Python interpreter"
        elif version[:2] < minimum:
            reason = f"it is Python {'.'.join(map(str, version))}"
        else:
            return version
    raise InterpreterNotFound(
        f"{python} is not a working Python >= {wanted}: {reason}; {how_to_get(minimum)}"
    )


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


def _uv_python_dir() -> Path:
    """Where ``uv python install`` puts interpreters."""
    explicit = os.environ.get("UV_PYTHON_INSTALL_DIR")
    if explicit:
        return Path(explicit)
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "uv" / "python"


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
    uv_dir = _uv_python_dir()
    if uv_dir.is_dir():
        # uv names them "cpython-3.13.1-linux-x86_64-gnu"; the version is checked by running them.
        found.extend(sorted(uv_dir.glob("cpython-*/bin/python3")))
    return found


def find_interpreter(
    minimum: tuple[int, int], explicit: Path | None = None
) -> tuple[Path, tuple[int, int, int]]:
    """The oldest working interpreter at least ``minimum`` (the oldest is the one best tested).

    ``explicit`` is used as given, or rejected with a reason; no other is tried then.
    """
    wanted = ".".join(map(str, minimum))
    if explicit is not None:
        return explicit, check_interpreter(explicit, minimum)
    working: list[tuple[tuple[int, int, int], Path]] = []
    for path in candidates(minimum):
        version = interpreter_version(path)
        if version is not None and version[:2] >= minimum:
            working.append((version, path))
    if not working:
        raise InterpreterNotFound(
            f"no Python >= {wanted} found on PATH or under pyenv or uv; {how_to_get(minimum)}"
        )
    version, path = min(working)
    return path, version
