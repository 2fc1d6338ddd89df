"""The emulator's AWS backends: moto, LocalStack as a host process, LocalStack's container.

::

    from emulator.aws.backends import BackendConfig, start_backend, provision

    with start_backend(BackendConfig(kind="moto", state_dir=state)) as backend:
        resources = provision(backend, "vault-table", key_policy=policy)
        ...  # boto3 clients at backend.endpoint_url
"""

from emulator.aws.backends.base import AwsBackend, BackendError, BackendUnavailable
from emulator.aws.backends.config import (
    BACKEND_KINDS,
    BackendConfig,
    BackendKind,
    ContainerSettings,
    LocalStackSettings,
    default_cache_dir,
)
from emulator.aws.backends.factory import create_backend, start_backend
from emulator.aws.backends.provision import (
    DEFAULT_KEY_ALIAS,
    KEY_STORE_NAME,
    KeyMaterialStore,
    ProvisionedResources,
    provision,
)

__all__ = [
    "BACKEND_KINDS",
    "DEFAULT_KEY_ALIAS",
    "KEY_STORE_NAME",
    "AwsBackend",
    "BackendConfig",
    "BackendError",
    "BackendKind",
    "BackendUnavailable",
    "ContainerSettings",
    "KeyMaterialStore",
    "LocalStackSettings",
    "ProvisionedResources",
    "create_backend",
    "default_cache_dir",
    "provision",
    "start_backend",
]
