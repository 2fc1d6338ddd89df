"""The parent's vsock-proxy on (CID 3, the spec's port; the vault's 8000), leading to the KMS front.

The spec's allow-list names the region's KMS endpoint (the only one the emulator serves,
checked when the spec is loaded); the proxy forwards it to the KMS front.
"""

from __future__ import annotations

from pathlib import Path

from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.components.kms_front import KmsFrontComponent
from emulator.daemon.enclave_spec import EnclaveSpec
from emulator.host.process import unix_socket_open
from emulator.nitro.vsock_proxy import VsockProxy
from vault.common.transport import PARENT_CID, UnixSocketTransport


class VsockProxyComponent(Component):
    name = "vsock-proxy"
    runs_in_daemon = True

    def __init__(self, context: Context, kms_front: KmsFrontComponent, *, spec: EnclaveSpec) -> None:
        super().__init__(context, kms_front)
        self.kms_front = kms_front
        self.spec = spec
        self.transport = UnixSocketTransport(self.layout.vsock_dir, PARENT_CID)
        self._proxy: VsockProxy | None = None

    @property
    def vsock_dir(self) -> Path:
        """The emulated vsock the proxy listens on (and the enclave must share)."""
        return self.transport.directory

    def start(self) -> None:
        proxy = VsockProxy(
            self.transport,
            ("127.0.0.1", int(self.kms_front.front.port)),
            listen_port=self.port,
            # Production's worker limit is opt-in; otherwise extra connections are relayed too.
            num_workers=self.config.vsock_proxy_workers if self.config.production_limits else None,
        )
        proxy.start()
        self._proxy = proxy

    @property
    def port(self) -> int:
        return self.spec.proxy_port

    def stop(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()

    def health(self) -> Health:
        return Health(unix_socket_open(self.transport.path_for(PARENT_CID, self.port)))

    def address(self) -> str:
        return f"vsock://{PARENT_CID}:{self.port}"
