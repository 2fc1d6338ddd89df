"""``start_backend``: the one entry point the emulator's supervisor uses."""

from __future__ import annotations

from emulator.aws.backends.base import AwsBackend
from emulator.aws.backends.config import BackendConfig
from emulator.aws.backends.localstack_container import LocalStackContainerBackend
from emulator.aws.backends.localstack_host import LocalStackHostBackend
from emulator.aws.backends.moto_server import MotoBackend

_BACKENDS: dict[str, type[AwsBackend]] = {
    "moto": MotoBackend,
    "localstack": LocalStackHostBackend,
    "localstack-container": LocalStackContainerBackend,
}


def create_backend(config: BackendConfig) -> AwsBackend:
    """The backend for ``config.kind``, not yet started (``prepare()`` may install it)."""
    return _BACKENDS[config.kind](config)


def start_backend(config: BackendConfig) -> AwsBackend:
    """Start the backend ``config.kind`` and return it once DynamoDB and KMS answer.

    Raises :class:`BackendUnavailable` when a prerequisite is missing and
    :class:`BackendError` when it fails to start; nothing is left running then.
    """
    backend = create_backend(config)
    backend.start()
    return backend
