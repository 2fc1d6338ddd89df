"""The AWS backend (moto, or LocalStack) that serves DynamoDB and KMS."""

from __future__ import annotations

from emulator.aws.backends import AwsBackend, BackendConfig, LocalStackSettings, start_backend
from emulator.daemon.components.base import Component, Context, Health


class BackendComponent(Component):
    name = "backend"
    runs_in_daemon = True

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._backend: AwsBackend | None = None

    @property
    def backend(self) -> AwsBackend:
        return self.require(self._backend)

    def start(self) -> None:
        backend = start_backend(
            BackendConfig(
                kind=self.config.backend,
                state_dir=self.layout.backend,
                region=self.config.region,
                account_id=self.config.account_id,
                persist=self.config.persist,
                localstack=LocalStackSettings(python=self.config.localstack_python)
                if self.config.localstack_python is not None
                else LocalStackSettings(),
            )
        )
        self._backend = backend
        self.context.facts.update(
            backend=self.config.backend,
            backend_endpoint=backend.endpoint_url,
            dynamodb_endpoint=backend.dynamodb_endpoint_url,
            region=self.config.region,
            account_id=self.config.account_id,
            persist=self.config.persist,
            # The backend's own test credentials (never checked; they select the account).
            backend_access_key_id=backend.access_key_id,
            backend_secret_access_key=backend.secret_access_key,
        )

    def stop(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.stop()

    def health(self) -> Health:
        return Health(bool(self._backend is not None and self._backend.health()))

    def address(self) -> str:
        return str(self._backend.endpoint_url) if self._backend is not None else ""

    def pids(self) -> list[int]:
        return list(self._backend.pids()) if self._backend is not None else []
