"""Measurements (PCR0/1/2/8) of an emulated enclave image, computed as ``nitro-cli`` does.

``nitro-cli build-enclave`` measures an EIF section by section: every PCR is
``SHA-384(48 zero bytes || SHA-384(measured bytes))`` (one extend of an all-zero
register). PCR1 covers the boot part (kernel, command line, bootstrap ramdisk), PCR2 the
application ramdisk(s), PCR0 all of them in order, and PCR8 the DER of the image
signing certificate.

The emulator's image is a directory holding a copy of the enclave's code, run by the
host's Python. Its counterparts:

* PCR1, the "kernel/bootstrap": a description of the runtime that executes the code
  (interpreter implementation and version, machine). An image moved to another
  interpreter is another image.
* PCR2, the application: every regular file under the image directory, in sorted
  relative-path order, each as ``len(path) || path || len(content) || content``
  (lengths as 8-byte big-endian, paths in the file system encoding with ``/``), so no two different trees
  produce the same stream. Symbolic links are measured by their target, never
  followed. ``__pycache__`` directories and ``.pyc``/``.pyo`` files are skipped: the
  interpreter writes them, they do not change what runs.
* PCR0: the bootstrap bytes followed by the application stream.
* PCR8: the signing certificate, when the image is signed.

The result is deterministic: it depends on file names and contents only, never on
timestamps, permissions or directory enumeration order.
"""

from __future__ import annotations

import hashlib
import os
import platform
import struct
import sys
from collections.abc import Iterator
from pathlib import Path, PurePath

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from vault.infra.key_policy import EnclaveMeasurements

PCR_SIZE = 48
#: Bytecode caches: the interpreter writes them and they do not change what runs, so they
#: are neither measured nor copied into an image (:mod:`emulator.nitro.image`).
CACHE_DIRS = frozenset({"__pycache__"})
CACHE_SUFFIXES = (".pyc", ".pyo")
_FILE = b"F"
_LINK = b"L"
_LENGTH = struct.Struct(">Q")


class MeasureError(ValueError):
    """The image directory cannot be measured."""


def extend_from_zero(measured: bytes) -> bytes:
    """A register that started as zeros, extended once with SHA-384 of ``measured``."""
    return hashlib.sha384(b"\x00" * PCR_SIZE + hashlib.sha384(measured).digest()).digest()


def default_runtime() -> str:
    """The runtime that runs an emulated enclave: this interpreter on this machine."""
    return f"{sys.implementation.name} {platform.python_version()} {platform.machine()}"


def is_bytecode_cache(relative: PurePath) -> bool:
    """Whether ``relative`` (a path inside an image) is, or lies in, a bytecode cache."""
    return bool(CACHE_DIRS.intersection(relative.parts)) or relative.name.endswith(CACHE_SUFFIXES)


def _entries(image_dir: Path) -> Iterator[tuple[str, Path]]:
    for current, dirs, files in os.walk(image_dir, followlinks=False):
        # Prune in place so os.walk does not descend; symlinked directories are measured as links.
        dirs[:] = [d for d in dirs if d not in CACHE_DIRS]
        base = Path(current)
        for name in [*files, *(d for d in dirs if (base / d).is_symlink())]:
            if is_bytecode_cache(PurePath(name)):
                continue
            path = base / name
            yield path.relative_to(image_dir).as_posix(), path


def _field(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def application_stream(image_dir: Path) -> bytes:
    """The bytes PCR2 measures (see the module docstring)."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise MeasureError(f"{image_dir} is not a directory")
    parts: list[bytes] = []
    for relative, path in sorted(_entries(image_dir)):
        name = os.fsencode(relative)
        if path.is_symlink():
            parts.append(_LINK + _field(name) + _field(os.fsencode(os.readlink(path))))
        elif path.is_file():
            parts.append(_FILE + _field(name) + _field(path.read_bytes()))
        else:
            raise MeasureError(f"{relative} is neither a regular file nor a symbolic link")
    if not parts:
        raise MeasureError(f"{image_dir} contains no files")
    return b"".join(parts)


def pcr8_for_certificate(certificate: x509.Certificate) -> str:
    return extend_from_zero(certificate.public_bytes(Encoding.DER)).hex()


def measure_image(
    image_dir: Path,
    *,
    signing_certificate: x509.Certificate | None = None,
    runtime: str | None = None,
) -> EnclaveMeasurements:
    """PCR0, PCR1, PCR2 (and PCR8 when signed) of the image in ``image_dir``."""
    bootstrap = _field((runtime or default_runtime()).encode("utf-8"))
    application = application_stream(image_dir)
    return EnclaveMeasurements(
        pcr0=extend_from_zero(bootstrap + application).hex(),
        pcr1=extend_from_zero(bootstrap).hex(),
        pcr2=extend_from_zero(application).hex(),
        pcr8=pcr8_for_certificate(signing_certificate) if signing_certificate is not None else None,
    )
