"""LocalStack's own virtualenv in the cache directory, created on first use.

LocalStack needs a newer Python than the emulator and pins that clash with the
project's (``cryptography`` 44 through ``pyopenssl``), so it gets an environment of its
own, keyed by its requirements and interpreter so that changing either makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.aws.backends.base import BackendError, BackendUnavailable
from emulator.aws.backends.interpreters import InterpreterNotFound, find_interpreter
from emulator.host.install_lock import install_lock
from emulator.host.process import tail_file
from emulator.host.progress import step

_READY_MARKER = ".nitro-vault-ready.json"
#: pip/uv resolving and downloading ~150 packages; generous for a slow mirror.
_INSTALL_TIMEOUT = 1800


@dataclass(frozen=True)
class LocalStackVenv:
    directory: Path
    #: Version of the interpreter the environment was built on.
    python_version: str
    #: Seconds spent installing now; 0.0 when the environment already existed.
    install_seconds: float

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    @property
    def static_libs(self) -> Path:
        """Read-only files LocalStack looks for in ``/usr/lib/localstack`` (its service catalog)."""
        return self.directory / "static-libs"


def _find_uv() -> Path | None:
    """uv next to the running interpreter (a project virtualenv) or on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    on_path = shutil.which("uv")
    return Path(on_path) if on_path else None


def _install_commands(
    uv: Path | None, python: Path, target: Path, requirements: tuple[str, ...]
) -> list[list[str]]:
    if uv is not None:
        return [
            [str(uv), "venv", "--quiet", "--python", str(python), str(target)],
            # Compiling now saves seconds on the first start.
            [
                str(uv),
                "pip",
                "install",
                "--compile-bytecode",
                "--python",
                str(target / "bin" / "python"),
                *requirements,
            ],
        ]
    return [
        [str(python), "-m", "venv", str(target)],
        [
            str(target / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            *requirements,
        ],
    ]


#: LocalStack builds an index of every AWS service's specification on each start unless it
#: finds one in its static libraries; building it once here makes starts seconds faster.
_CATALOG_SCRIPT = """
import os, sys
from localstack.aws import spec
spec.build_service_index_cache(os.path.join(sys.argv[1], spec._get_catalog_filename()))
"""


def _run_logged(command: list[str], log_file: Path, extra_env: dict[str, str] | None = None) -> None:
    env = dict(os.environ)
    # uv must use the interpreter it was given, never download one (no such host is reachable).
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra_env or {})
    with open(log_file, "ab") as log:
        log.write(("$ " + " ".join(command) + "\n").encode())
        log.flush()
        try:
            result = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=_INSTALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"installing LocalStack timed out; see {log_file}") from exc
    if result.returncode != 0:
        raise BackendError(
            f"installing LocalStack failed ({command[0]} exited {result.returncode}); "
            f"see {log_file}:\n{tail_file(log_file, 15)}"
        )


def ensure_localstack_venv(
    cache_dir: Path, requirements: tuple[str, ...], minimum: tuple[int, int], python: Path | None
) -> LocalStackVenv:
    """Return LocalStack's virtualenv, creating it first if needed (under an install lock)."""
    try:
        interpreter, version = find_interpreter(minimum, python)
    except InterpreterNotFound as exc:
        raise BackendUnavailable(
            f"the localstack backend needs Python >= {minimum[0]}.{minimum[1]}: {exc}"
        ) from exc
    version_text = ".".join(map(str, version))
    identity = json.dumps({"requirements": sorted(requirements), "python": version_text}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    root = cache_dir / "localstack"
    target = root / f"venv-{key}"
    marker = target / _READY_MARKER
    with install_lock(root / f"venv-{key}.lock"):
        if marker.is_file():
            return LocalStackVenv(target, version_text, 0.0)
        began = time.monotonic()
        # A directory without the marker is a failed or interrupted install: start over.
        shutil.rmtree(target, ignore_errors=True)
        log_file = root / f"venv-{key}.install.log"
        log_file.write_bytes(b"")
        venv = LocalStackVenv(target, version_text, 0.0)
        try:
            with step(f"LocalStack: installing its virtualenv on Python {version_text} (log: {log_file})"):
                for command in _install_commands(_find_uv(), interpreter, target, requirements):
                    _run_logged(command, log_file)
            venv.static_libs.mkdir()
            with (
                step("LocalStack: building its service catalog"),
                tempfile.TemporaryDirectory(prefix="localstack-fs-") as scratch,
            ):
                # Host mode with a scratch root: importing LocalStack must not touch /var/lib/localstack.
                _run_logged(
                    [str(venv.python), "-c", _CATALOG_SCRIPT, str(venv.static_libs)],
                    log_file,
                    {"OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": scratch, "XDG_CACHE_HOME": scratch},
                )
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        # Written last: its presence means the environment is complete.
        marker.write_text(identity + "\n", encoding="utf-8")
        return LocalStackVenv(target, version_text, time.monotonic() - began)
