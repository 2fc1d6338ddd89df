"""vsock transport: real ``AF_VSOCK`` in production, Unix domain sockets in the emulator.

Product code obtains a transport from :class:`TransportConfig` and never asks which
one it got. The Unix-socket transport keeps one socket path per (CID, port) in one
directory, in the manner of Firecracker's hybrid vsock: a listener on CID ``c`` port
``p`` binds ``<dir>/vsock-<c>-<p>.sock`` and a client connecting to (``c``, ``p``)
connects to that path. Listening on ``VMADDR_CID_ANY`` binds the transport's own CID.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_CID_HYPERVISOR = 0
VMADDR_CID_LOCAL = 1
VMADDR_CID_HOST = 2
#: The parent instance as seen from inside a Nitro Enclave.
PARENT_CID = 3
#: Enclave's decrypt service port.
ENCLAVE_PORT = 5050
#: vsock-proxy port on the parent that leads to KMS.
KMS_PROXY_PORT = 8000
#: nitro-cli assigns enclave CIDs from 4 upwards; 16 is what upstream examples show.
DEFAULT_ENCLAVE_CID = 16

TransportKind = Literal["vsock", "uds"]


class TransportError(OSError):
    """A vsock connection could not be made or accepted."""


class VsockTransport(Protocol):
    """Creates stream sockets addressed by (CID, port)."""

    def connect(self, cid: int, port: int, timeout: float) -> socket.socket:
        """Return a connected stream socket whose timeout is ``timeout`` seconds."""
        ...

    def listen(self, port: int, cid: int = VMADDR_CID_ANY, backlog: int = 128) -> socket.socket:
        """Return a bound, listening stream socket."""
        ...

    def describe(self, cid: int, port: int) -> str:
        """A human-readable address, for logs and errors."""
        ...


class AfVsockTransport:
    """The kernel's ``AF_VSOCK`` sockets (Nitro Enclaves and their parent instance)."""

    def connect(self, cid: int, port: int, timeout: float) -> socket.socket:
        family = getattr(socket, "AF_VSOCK", None)
        if family is None:
            raise TransportError("AF_VSOCK is not supported on this platform")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((cid, port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot connect to {self.describe(cid, port)}: {exc}") from exc
        return sock

    def listen(self, port: int, cid: int = VMADDR_CID_ANY, backlog: int = 128) -> socket.socket:
        family = getattr(socket, "AF_VSOCK", None)
        if family is None:
            raise TransportError("AF_VSOCK is not supported on this platform")
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((cid, port))
        sock.listen(backlog)
        return sock

    def describe(self, cid: int, port: int) -> str:
        return f"vsock://{cid}:{port}"


class UnixSocketTransport:
    """vsock emulated with Unix domain sockets, one path per (CID, port)."""

    def __init__(self, directory: Path, local_cid: int) -> None:
        self.directory = Path(directory)
        self.local_cid = local_cid

    def path_for(self, cid: int, port: int) -> Path:
        if cid == VMADDR_CID_ANY:
            cid = self.local_cid
        return self.directory / f"vsock-{cid}-{port}.sock"

    def connect(self, cid: int, port: int, timeout: float) -> socket.socket:
        path = self.path_for(cid, port)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot connect to {self.describe(cid, port)}: {exc}") from exc
        return sock

    def listen(self, port: int, cid: int = VMADDR_CID_ANY, backlog: int = 128) -> socket.socket:
        path = self.path_for(cid, port)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(backlog)
        return sock

    def describe(self, cid: int, port: int) -> str:
        shown = self.local_cid if cid == VMADDR_CID_ANY else cid
        return f"vsock://{shown}:{port} (uds {self.path_for(cid, port)})"


@dataclass(frozen=True)
class TransportConfig:
    """Which vsock transport to use.

    Environment: ``VAULT_VSOCK_TRANSPORT`` (``vsock`` | ``uds``), ``VAULT_VSOCK_UDS_DIR``
    and ``VAULT_VSOCK_LOCAL_CID`` (the CID this side listens as; ``uds`` only).
    """

    kind: TransportKind = "vsock"
    uds_dir: Path | None = None
    local_cid: int = PARENT_CID

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TransportConfig:
        env = os.environ if environ is None else environ
        kind = env.get("VAULT_VSOCK_TRANSPORT", "vsock").strip().lower()
        if kind not in ("vsock", "uds"):
            raise ValueError(f"VAULT_VSOCK_TRANSPORT must be 'vsock' or 'uds', not {kind!r}")
        uds_dir = env.get("VAULT_VSOCK_UDS_DIR")
        local_cid = int(env.get("VAULT_VSOCK_LOCAL_CID", str(PARENT_CID)))
        return cls(kind=kind, uds_dir=Path(uds_dir) if uds_dir else None, local_cid=local_cid)  # type: ignore[arg-type]

    def create(self) -> VsockTransport:
        if self.kind == "vsock":
            return AfVsockTransport()
        if self.uds_dir is None:
            raise ValueError("the uds vsock transport needs VAULT_VSOCK_UDS_DIR")
        return UnixSocketTransport(self.uds_dir, self.local_cid)

    def as_env(self) -> dict[str, str]:
        """The environment that reproduces this configuration in another process."""
        env = {"VAULT_VSOCK_TRANSPORT": self.kind, "VAULT_VSOCK_LOCAL_CID": str(self.local_cid)}
        if self.uds_dir is not None:
            env["VAULT_VSOCK_UDS_DIR"] = str(self.uds_dir)
        return env
