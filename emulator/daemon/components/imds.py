"""IMDSv2 of the emulated parent instance, serving the instance role's credentials."""

from __future__ import annotations

from emulator.aws.imds import ImdsServer
from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.components.credentials import AwsKey
from emulator.host.process import port_open
from emulator.nitro.pki import DEFAULT_INSTANCE_ID


class ImdsComponent(Component):
    name = "imds"
    runs_in_daemon = True

    def __init__(self, context: Context, *, instance: AwsKey) -> None:
        super().__init__(context)
        self.instance = instance
        self._server: ImdsServer | None = None

    @property
    def server(self) -> ImdsServer:
        return self.require(self._server)

    @property
    def running_server(self) -> ImdsServer | None:
        return self._server

    def start(self) -> None:
        server = ImdsServer(
            role=self.config.instance_role_name,
            account_id=self.config.account_id,
            instance_id=DEFAULT_INSTANCE_ID,
            # One stable credential, so the KMS front can map its key to the instance role.
            credential_provider=self.instance.as_imds,
        )
        server.start()
        self._server = server
        self.context.facts["imds_endpoint"] = server.endpoint

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def health(self) -> Health:
        return Health(self._server is not None and port_open(int(self._server.port)))

    def address(self) -> str:
        return self._server.endpoint if self._server is not None else ""
