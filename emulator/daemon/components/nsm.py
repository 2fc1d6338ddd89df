"""The NSM service: attestation documents signed by the test PKI, PCRs of the launched image."""

from __future__ import annotations

from pathlib import Path

from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.components.pki import PkiComponent
from emulator.nitro.nsm import NsmService


class NsmComponent(Component):
    name = "nsm"
    runs_in_daemon = True

    def __init__(self, context: Context, pki: PkiComponent) -> None:
        super().__init__(context, pki)
        self.pki = pki
        self._service: NsmService | None = None

    @property
    def socket_dir(self) -> Path:
        return self.layout.runtime_dir / "nsm"

    @property
    def service(self) -> NsmService:
        return self.require(self._service)

    @property
    def running_service(self) -> NsmService | None:
        return self._service

    def start(self) -> None:
        service = NsmService(self.pki.pki, self.socket_dir)
        service.start()
        self._service = service

    def stop(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.stop()

    def health(self) -> Health:
        return Health(self._service is not None)

    def address(self) -> str:
        return str(self.socket_dir)
