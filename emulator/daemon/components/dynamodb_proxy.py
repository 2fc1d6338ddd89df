"""Pass-through proxy between the API and the backend's DynamoDB, where write faults are injected."""

from __future__ import annotations

from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy
from emulator.daemon.components.backend import BackendComponent
from emulator.daemon.components.base import Component, Context, Health
from emulator.host.process import port_open


class DynamoDbProxyComponent(Component):
    name = "dynamodb-proxy"
    runs_in_daemon = True

    def __init__(self, context: Context, backend: BackendComponent) -> None:
        super().__init__(context, backend)
        self.backend = backend
        self._proxy: DynamoDbFaultProxy | None = None

    @property
    def proxy(self) -> DynamoDbFaultProxy:
        return self.require(self._proxy)

    @property
    def running_proxy(self) -> DynamoDbFaultProxy | None:
        return self._proxy

    def start(self) -> None:
        backend = self.backend.backend
        proxy = DynamoDbFaultProxy(
            backend.upstream("dynamodb"),
            region=self.config.region,
            credentials=(backend.access_key_id, backend.secret_access_key),
        )
        proxy.start()
        self._proxy = proxy
        self.context.facts["dynamodb_proxy_endpoint"] = proxy.endpoint_url

    def stop(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()

    def health(self) -> Health:
        return Health(self._proxy is not None and port_open(int(self._proxy.port)))

    def address(self) -> str:
        return self._proxy.endpoint_url if self._proxy is not None else ""
