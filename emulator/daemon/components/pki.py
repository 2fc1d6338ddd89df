"""The emulator's test PKI (the root the KMS front trusts, the NSM's signing chain)."""

from __future__ import annotations

from emulator.daemon.components.base import Component, Context
from emulator.nitro.pki import TestPki


class PkiComponent(Component):
    name = "pki"
    is_step = True

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._pki: TestPki | None = None

    @property
    def pki(self) -> TestPki:
        return self.require(self._pki)

    def start(self) -> None:
        self._pki = TestPki.load_or_create(self.layout.pki, region=self.config.region)

    def address(self) -> str:
        return str(self.layout.pki)
