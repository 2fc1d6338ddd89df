"""The enclave's road to KMS: a loopback TCP listener that continues over vsock.

A Nitro Enclave has no network, only vsock. The parent runs the vsock-proxy on
(CID 3, port 8000), which forwards raw bytes to ``kms.<region>.amazonaws.com:443``.
This bridge listens on loopback inside the enclave and relays every connection to
that proxy, so boto3 talks to an ordinary TCP endpoint and TLS runs end to end from
boto3 to KMS, with neither the bridge nor the parent able to read it.

In production the bridge listens on ``127.0.0.1:443`` and the enclave image maps
``kms.<region>.amazonaws.com`` to ``127.0.0.1`` (``/etc/hosts``), so the certificate
check still names the real host; the enclave's init must bring ``lo`` up, which a
Nitro Enclave does not do by itself. In the emulator the bridge takes an ephemeral
port and boto3 uses plain HTTP to it (``VAULT_KMS_ENDPOINT=http://127.0.0.1:{port}``).
"""

from __future__ import annotations

import socket

from vault.common.transport import KMS_PROXY_PORT, PARENT_CID, VsockTransport
from vault.enclave.relay import RelayServer


class KmsBridge:
    """Loopback listener relaying to the vsock-proxy; ``port`` is known once started."""

    def __init__(
        self,
        transport: VsockTransport,
        *,
        host: str = "127.0.0.1",
        port: int = 443,
        proxy_cid: int = PARENT_CID,
        proxy_port: int = KMS_PROXY_PORT,
        connect_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_connections: int = 32,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            # Anything else would offer the enclave's only road out to other hosts.
            raise ValueError("the KMS bridge listens on loopback only")
        self._transport = transport
        self._host = host
        self._requested_port = port
        self._proxy = (proxy_cid, proxy_port)
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._server: RelayServer | None = None
        self.port: int | None = None

    def _connect(self) -> socket.socket:
        cid, port = self._proxy
        return self._transport.connect(cid, port, self._connect_timeout)

    def start(self) -> int:
        """Bind and start relaying; return the port."""
        if self._server is not None and self.port is not None:
            return self.port
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._requested_port))
            listener.listen(self._max_connections)
        except OSError:
            listener.close()
            raise
        self.port = int(listener.getsockname()[1])
        self._server = RelayServer(
            listener,
            self._connect,
            name="kms-bridge",
            idle_timeout=self._idle_timeout,
            max_connections=self._max_connections,
        )
        self._server.start()
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> KmsBridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
