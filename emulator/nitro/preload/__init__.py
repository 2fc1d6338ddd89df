"""The preload library that gives an unmodified enclave program ``/dev/nsm`` and ``AF_VSOCK``.

``libnitroemu.so`` (``nitroemu.c`` beside this file; its header comment says exactly
what it intercepts) is loaded into the enclave process with ``LD_PRELOAD``:

* ``open("/dev/nsm")`` and ``ioctl(fd, NSM_IOCTL_RAW, ...)`` reach the emulated NSM's
  Unix socket (:mod:`emulator.nitro.nsm`), so :class:`vault.enclave.nsm.DeviceNsm` and
  any other client of the real driver work unchanged;
* ``socket(AF_VSOCK, SOCK_STREAM, 0)`` and the calls that take a ``struct sockaddr_vm``
  map onto the emulator's per-(CID, port) Unix sockets, the layout of
  :class:`vault.common.transport.UnixSocketTransport`.

The library is compiled on first use with the system C compiler (``$CC``, else ``cc``,
``gcc`` or ``clang``) into ``<cache>/<key>/libnitroemu.so``, where the key hashes the
source, the flags and the compiler, and reused from there. It lives outside the enclave
image: the sandbox adds it to the environment (and mounts it into a container); it never
changes what the image measures.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("nitroemu.c")
LIBRARY_NAME = "libnitroemu.so"
CFLAGS = ("-std=c11", "-fPIC", "-shared", "-O2", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden")
LIBS = ("-ldl", "-pthread")
COMPILERS = ("cc", "gcc", "clang")
COMPILE_TIMEOUT = 120.0

NSM_SOCKET_ENV = "NITRO_EMU_NSM_SOCKET"
VSOCK_DIR_ENV = "NITRO_EMU_VSOCK_DIR"
VSOCK_CID_ENV = "NITRO_EMU_VSOCK_CID"
PEER_CID_ENV = "NITRO_EMU_VSOCK_PEER_CID"
PRELOAD_ENV = "LD_PRELOAD"
_MAX_CID = 0xFFFFFFFF


class PreloadError(RuntimeError):
    """The preload library could not be built; ``code`` is stable (``preload.no_compiler``, ...)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DeviceMapping:
    """Where the library sends ``/dev/nsm`` and ``AF_VSOCK`` for one process.

    ``local_cid`` is the CID the process is (what ``VMADDR_CID_ANY`` binds and what its
    peers see); ``nsm_socket`` is its NSM socket (``None``: no ``/dev/nsm``);
    ``peer_cid`` is how a peer outside the preload (a plain Unix-socket client) is shown,
    by default CID 3, the parent.
    """

    vsock_dir: Path
    local_cid: int
    nsm_socket: Path | None = None
    peer_cid: int | None = None

    def __post_init__(self) -> None:
        for name, cid in (("local_cid", self.local_cid), ("peer_cid", self.peer_cid)):
            if cid is not None and not 0 <= cid < _MAX_CID:
                raise ValueError(f"{name} must be a CID within 0..{_MAX_CID - 1}, not {cid}")

    def env(self) -> dict[str, str]:
        env = {VSOCK_DIR_ENV: str(self.vsock_dir), VSOCK_CID_ENV: str(self.local_cid)}
        if self.nsm_socket is not None:
            env[NSM_SOCKET_ENV] = str(self.nsm_socket)
        if self.peer_cid is not None:
            env[PEER_CID_ENV] = str(self.peer_cid)
        return env


@dataclass(frozen=True)
class Preload:
    """The built library and the mapping one process runs with."""

    library: Path
    mapping: DeviceMapping

    def env(self, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
        """``LD_PRELOAD`` (ahead of any preload in ``inherited``) and the mapping's variables."""
        preload = [str(self.library)]
        earlier = (inherited or {}).get(PRELOAD_ENV, "")
        preload.extend(part for part in earlier.replace(":", " ").split() if part != str(self.library))
        return {PRELOAD_ENV: " ".join(preload), **self.mapping.env()}


def find_compiler(environ: Mapping[str, str] | None = None) -> list[str]:
    """``$CC`` (may carry arguments), else the first of cc, gcc, clang on ``PATH``."""
    env = os.environ if environ is None else environ
    explicit = env.get("CC", "").strip()
    if explicit:
        argv = shlex.split(explicit)
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise PreloadError(f"CC={explicit!r} is not an executable on PATH", "preload.no_compiler")
        return argv
    for name in COMPILERS:
        found = shutil.which(name, path=env.get("PATH"))
        if found is not None:
            return [found]
    raise PreloadError(
        "the emulator's device mode compiles a small C library (libnitroemu) and needs a C compiler: "
        "none of cc, gcc, clang is on PATH (Debian/Ubuntu: apt-get install gcc libc6-dev; or set CC)",
        "preload.no_compiler",
    )


def _compiler_identity(compiler: Sequence[str]) -> bytes:
    try:
        result = subprocess.run(
            [*compiler, "--version"], capture_output=True, timeout=COMPILE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PreloadError(f"cannot run the C compiler {compiler[0]}: {exc}", "preload.no_compiler") from None
    return result.stdout


def cache_key(source: bytes, compiler: Sequence[str], identity: bytes) -> str:
    digest = hashlib.sha256()
    for part in (source, "\0".join(compiler).encode(), identity, " ".join(CFLAGS + LIBS).encode()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    digest.update(platform.machine().encode())
    return digest.hexdigest()[:32]


def build_library(cache_dir: Path, *, environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of ``libnitroemu.so`` under ``cache_dir``, compiling it if needed.

    Safe to call from several processes at once: each compiles into a file of its own and
    renames it into place, so a reader sees either nothing or a complete library.
    """
    source = SOURCE.read_bytes()
    compiler = find_compiler(environ)
    key = cache_key(source, compiler, _compiler_identity(compiler))
    target = Path(cache_dir) / key / LIBRARY_NAME
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=".libnitroemu-", suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        try:
            result = subprocess.run(
                [*compiler, *CFLAGS, "-o", scratch, str(SOURCE), *LIBS],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PreloadError(f"compiling {SOURCE.name} failed: {exc}", "preload.compile_failed") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-20:]
            raise PreloadError(
                f"compiling {SOURCE.name} with {compiler[0]} failed:\n" + "\n".join(detail),
                "preload.compile_failed",
            )
        # mkstemp made it 0600; the sandbox's program may run as another user (a container's).
        os.chmod(scratch, 0o644)
        os.replace(scratch, target)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return target


def preload_for(
    cache_dir: Path,
    *,
    vsock_dir: Path,
    local_cid: int,
    nsm_socket: Path | None = None,
    peer_cid: int | None = None,
) -> Preload:
    """Build (or reuse) the library and pair it with one process's mapping."""
    mapping = DeviceMapping(
        vsock_dir=vsock_dir, local_cid=local_cid, nsm_socket=nsm_socket, peer_cid=peer_cid
    )
    return Preload(build_library(cache_dir), mapping)
