"""Saving moto's state to a file and restoring it: what ``vault-emulator up --persist`` keeps on moto.

moto keeps each service's data in process globals, one backend object per (account,
region) of a ``BackendDict`` (``moto.backends.get_backend``); it has no persistence of
its own. Replaying its request recorder would not do: a replayed ``CreateKey`` makes
new key material, and every ciphertext made before no longer decrypts. So the backend
objects of :data:`PERSISTED_SERVICES` in the emulator's account are pickled whole. They
pickle as they are, but for the ``cryptography`` keys of moto's asymmetric KMS keys,
which are written as PKCS#8 (private) or SubjectPublicKeyInfo (public) DER and loaded back.

The file: one line of magic, one line of JSON (:class:`SnapshotHeader`: the moto and
Python versions that wrote it, the payload's length and SHA-256), then the pickle. It
is written to a temporary file beside it and renamed, so a crash leaves the previous
snapshot whole. A snapshot from another major version of moto is refused (its model
classes differ); one from another minor version is tried, and refused with the same
hint if it does not load.

Unpickling runs code named by the file: the snapshot is trusted as the state directory
is, which also holds the test PKI's private keys (mode 0600, like them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import moto
import moto.backends
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_der_private_key,
    load_der_public_key,
)
from moto.core.base_backend import BaseBackend

from emulator.aws.backends.base import BackendError

#: The services whose state the emulator needs back: its table, its keys, the roles STS assumes.
PERSISTED_SERVICES: tuple[str, ...] = ("dynamodb", "kms", "sts", "iam")
SNAPSHOT_NAME = "moto-state.pickle"
_MAGIC = b"nitro-vault-moto-state\n"
#: Bumped when the file's layout changes; a snapshot of another format is refused.
FORMAT_VERSION = 1
_RESET_HINT = "run `vault-emulator reset` to start afresh (this deletes the persisted vaults)"
#: Restores replace moto's globals; two at once in one process would interleave.
_lock = threading.Lock()

_PRIVATE_KEY_TYPES = PrivateKeyTypes.__args__  # type: ignore[attr-defined]  # a typing Union
_PUBLIC_KEY_TYPES = PublicKeyTypes.__args__  # type: ignore[attr-defined]  # likewise


class SnapshotError(BackendError):
    """A snapshot that cannot be restored; the message says why and what to do."""


@dataclass(frozen=True)
class SnapshotHeader:
    format: int
    moto_version: str
    python_version: str
    services: tuple[str, ...]
    #: The accounts saved (the emulator's one).
    accounts: tuple[str, ...]
    payload_bytes: int
    payload_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SnapshotHeader:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the header is not a JSON object")
        return cls(
            format=int(data["format"]),
            moto_version=str(data["moto_version"]),
            python_version=str(data["python_version"]),
            services=tuple(str(s) for s in data["services"]),
            accounts=tuple(str(a) for a in data["accounts"]),
            payload_bytes=int(data["payload_bytes"]),
            payload_sha256=str(data["payload_sha256"]),
        )


@dataclass(frozen=True)
class SavedBackend:
    """One (service, account, region) backend of moto, as pickled."""

    service: str
    account_id: str
    region: str
    backend: BaseBackend


def _load_private_key(der: bytes) -> PrivateKeyTypes:
    return load_der_private_key(der, password=None)


def _load_public_key(der: bytes) -> PublicKeyTypes:
    return load_der_public_key(der)


class _Pickler(pickle.Pickler):
    """A pickler that writes ``cryptography`` keys, which cannot pickle themselves, as DER."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _PRIVATE_KEY_TYPES):
            der = obj.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
            return _load_private_key, (der,)
        if isinstance(obj, _PUBLIC_KEY_TYPES):
            return _load_public_key, (obj.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),)
        return NotImplemented


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _live_backends(services: tuple[str, ...], accounts: tuple[str, ...]) -> Iterator[SavedBackend]:
    for service in services:
        for account_id, region, backend in moto.backends.get_backend(service).iter_backends():  # type: ignore[call-overload]  # any service name
            if account_id in accounts:
                yield SavedBackend(service, account_id, region, backend)


def save_snapshot(
    path: Path, accounts: tuple[str, ...], services: tuple[str, ...] = PERSISTED_SERVICES
) -> SnapshotHeader:
    """Write the state of ``services`` in ``accounts`` to ``path`` (atomically); return its header.

    Call it while no request is being served (:meth:`MotoBackend.stop` does): a request
    that changes a backend during the pickling could leave it half-written.
    """
    with _lock:
        buffer = io.BytesIO()
        _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(list(_live_backends(services, accounts)))
    payload = buffer.getvalue()
    header = SnapshotHeader(
        format=FORMAT_VERSION,
        moto_version=moto.__version__,
        python_version=platform.python_version(),
        services=services,
        accounts=accounts,
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(_MAGIC)
            handle.write(header.to_json().encode() + b"\n")
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return header


def read_header(path: Path) -> tuple[SnapshotHeader, bytes]:
    """The header and payload of the snapshot at ``path``, checked; :class:`SnapshotError` otherwise."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise SnapshotError(f"{path} is not a moto state snapshot; {_RESET_HINT}")
    header_line, _, payload = data[len(_MAGIC) :].partition(b"\n")
    try:
        header = SnapshotHeader.from_json(header_line.decode())
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"the header of {path} cannot be read ({exc}); {_RESET_HINT}") from exc
    if header.format != FORMAT_VERSION:
        raise SnapshotError(
            f"{path} has snapshot format {header.format}, this emulator reads format {FORMAT_VERSION}; "
            f"{_RESET_HINT}"
        )
    if len(payload) != header.payload_bytes or hashlib.sha256(payload).hexdigest() != header.payload_sha256:
        raise SnapshotError(f"{path} is damaged (its payload does not match its header); {_RESET_HINT}")
    if _major(header.moto_version) != _major(moto.__version__):
        raise SnapshotError(
            f"{path} was saved by moto {header.moto_version}, and this is moto {moto.__version__}: "
            f"moto {_major(moto.__version__)}.x cannot read moto {_major(header.moto_version)}.x's state; "
            f"install moto {_major(header.moto_version)}.x to use it, or {_RESET_HINT}"
        )
    return header, payload


def restore_snapshot(path: Path, account_id: str) -> SnapshotHeader:
    """Replace this process's moto backends by those saved at ``path``; return the snapshot's header.

    Each saved (service, account, region) backend replaces the live one; backends the
    snapshot does not name are left as they are. A snapshot of another account than
    ``account_id`` (the one served now) is refused: its vaults would be invisible, and the
    next save would drop them.
    """
    header, payload = read_header(path)
    if header.accounts != (account_id,):
        raise SnapshotError(
            f"{path} holds account {', '.join(header.accounts) or 'none'}, and this emulator serves "
            f"account {account_id}: start it with that account, or {_RESET_HINT}"
        )
    try:
        saved = pickle.loads(payload)  # noqa: S301 (the state directory's own file; see the module docstring)
    except Exception as exc:
        raise SnapshotError(
            f"{path} (moto {header.moto_version}, Python {header.python_version}) does not load under "
            f"moto {moto.__version__}, Python {platform.python_version()}: {type(exc).__name__}: {exc}; "
            f"{_RESET_HINT}"
        ) from exc
    if not isinstance(saved, list) or not all(isinstance(entry, SavedBackend) for entry in saved):
        raise SnapshotError(f"{path} does not hold moto backends; {_RESET_HINT}")
    with _lock:
        for entry in saved:
            backends = moto.backends.get_backend(entry.service)
            # Indexing creates the account's dictionary; assigning bypasses moto's lazy creation.
            backends[entry.account_id][entry.region] = entry.backend
    return header
