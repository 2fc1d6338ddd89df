"""The parent's vsock-proxy: vsock (CID 3, port 8000) → one allowed TCP destination.

Like ``vsock-proxy <port> <host> <port> --config vsock-proxy.yaml`` on a Nitro
parent, the proxy forwards raw bytes of every vsock connection to a single destination
and refuses to run for a destination that its allow-list does not name. In the
emulator the vsock side is the Unix-socket transport (``vsock-3-8000.sock``) and the
destination is the KMS attestation front.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from vault.common.transport import KMS_PROXY_PORT, PARENT_CID, UnixSocketTransport, VsockTransport
from vault.enclave.relay import RelayServer

Destination = tuple[str, int]


class VsockProxyError(ValueError):
    """The destination is not on the allow-list."""


class VsockProxy:
    def __init__(
        self,
        transport: VsockTransport,
        destination: Destination,
        *,
        allowlist: Iterable[Destination] | None = None,
        listen_port: int = KMS_PROXY_PORT,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_connections: int = 32,
    ) -> None:
        allowed = {(host.lower(), int(port)) for host, port in (allowlist or [destination])}
        host, port = destination
        if (host.lower(), int(port)) not in allowed:
            raise VsockProxyError(f"{host}:{port} is not on the vsock-proxy allow-list")
        self.destination: Destination = (host, int(port))
        self._transport = transport
        self.listen_port = listen_port
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._server: RelayServer | None = None

    @classmethod
    def over_uds(
        cls,
        vsock_dir: Path,
        destination: Destination,
        *,
        allowlist: Iterable[Destination] | None = None,
        listen_port: int = KMS_PROXY_PORT,
    ) -> VsockProxy:
        """A proxy on the emulated vsock in ``vsock_dir``, listening as the parent (CID 3)."""
        transport = UnixSocketTransport(vsock_dir, PARENT_CID)
        return cls(transport, destination, allowlist=allowlist, listen_port=listen_port)

    def _connect(self) -> socket.socket:
        return socket.create_connection(self.destination, timeout=self._connect_timeout)

    def start(self) -> None:
        if self._server is not None:
            return
        listener = self._transport.listen(self.listen_port, backlog=self._max_connections)
        self._server = RelayServer(
            listener,
            self._connect,
            name="vsock-proxy",
            idle_timeout=self._idle_timeout,
            max_connections=self._max_connections,
        )
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> VsockProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
