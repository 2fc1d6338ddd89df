"""The interface every AWS backend implements, and its errors."""

from __future__ import annotations

import abc
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from emulator.aws.backends.config import BackendConfig
from emulator.aws.upstream import HttpUpstream, Upstream

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kms.client import KMSClient

#: The secret is never checked by a backend; the access key id selects the account (see config).
SECRET_ACCESS_KEY = "test"  # noqa: S105 (a fixed dummy secret that emulated services ignore)
#: Health probes must answer quickly and must not retry for a minute.
_PROBE_CONFIG = BotoConfig(connect_timeout=2, read_timeout=10, retries={"max_attempts": 1})


class BackendError(RuntimeError):
    """A backend could not be installed, started or provisioned."""


class BackendUnavailable(BackendError):
    """A prerequisite of the requested backend is missing; the message says which."""


class AwsBackend(abc.ABC):
    """An endpoint on 127.0.0.1 that serves DynamoDB and KMS (and STS where the backend has it).

    Use as a context manager or call :meth:`stop`; stopping twice is harmless.
    """

    #: Whether a key policy can be attached to the backend's keys and read back with
    #: GetKeyPolicy without changing what the backend allows.
    stores_key_policies: ClassVar[bool] = True
    #: Whether CreateKey takes a key's id and material from the tags ``_custom_id_`` and
    #: ``_custom_key_material_`` (LocalStack's extension): provisioning under ``persist``
    #: then recreates a key lost in a restart with the same id and material.
    accepts_custom_key_material: ClassVar[bool] = False

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        #: Seconds :meth:`start` took, installation excluded.
        self.started_seconds: float | None = None
        # Creating a boto3 client costs tens of milliseconds; health() runs often.
        self._probe_clients: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    def _start(self) -> None:
        """Start serving; return once the endpoint answers DynamoDB and KMS calls."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release every process and port the backend owns."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Processes the backend owns (not the calling process)."""

    def prepare(self) -> None:  # noqa: B027 (an optional hook: most backends install nothing)
        """Install what the backend needs (into the cache directory); nothing for most backends."""

    def start(self) -> None:
        """:meth:`prepare`, then start; on failure, release whatever was started and re-raise."""
        try:
            self.prepare()
            began = time.monotonic()
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - began

    def __enter__(self) -> AwsBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- endpoints -------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; valid between start and stop."""

    @property
    def dynamodb_endpoint_url(self) -> str:
        return self.endpoint_url

    @property
    def kms_endpoint_url(self) -> str:
        return self.endpoint_url

    @property
    def region(self) -> str:
        return self.config.region

    @property
    def access_key_id(self) -> str:
        return self.config.account_id

    @property
    def secret_access_key(self) -> str:
        return SECRET_ACCESS_KEY

    def service_endpoint_url(self, service: str) -> str:
        """The URL that serves ``service`` (DynamoDB may live apart from the rest)."""
        endpoints = {"dynamodb": self.dynamodb_endpoint_url, "kms": self.kms_endpoint_url}
        return endpoints.get(service, self.endpoint_url)

    def upstream(self, service: str) -> Upstream:
        """Where the daemon's services forward ``service`` (``dynamodb`` or ``kms``) requests."""
        return HttpUpstream(self.service_endpoint_url(service))

    @overload
    def client(self, service: Literal["kms"], config: BotoConfig | None = None) -> KMSClient: ...
    @overload
    def client(self, service: Literal["dynamodb"], config: BotoConfig | None = None) -> DynamoDBClient: ...
    @overload
    def client(self, service: str, config: BotoConfig | None = None) -> Any: ...
    def client(self, service: str, config: BotoConfig | None = None) -> Any:
        """A boto3 client for ``service`` on this backend, with the backend's test credentials."""
        # ``service`` is any name, not one of boto3-stubs' per-service literals.
        session: Any = boto3.session.Session()
        return session.client(
            service,
            endpoint_url=self.service_endpoint_url(service),
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=config,
        )

    # -- status ----------------------------------------------------------------------------

    def health(self) -> bool:
        """True when DynamoDB and KMS both answer a read-only call."""
        try:
            _ = self.endpoint_url  # raises once stopped, whatever the cached clients point at
            for service in ("dynamodb", "kms"):
                if service not in self._probe_clients:
                    self._probe_clients[service] = self.client(service, _PROBE_CONFIG)
            self._probe_clients["dynamodb"].list_tables(Limit=1)
            self._probe_clients["kms"].list_keys(Limit=1)
        except (BotoCoreError, ClientError, BackendError):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        """One row of the emulator's status table."""
        return {
            "kind": self.config.kind,
            "endpoint_url": self._endpoint_or_empty(),
            "region": self.region,
            "account_id": self.config.account_id,
            "pids": self.pids(),
            "started_seconds": self.started_seconds,
            "state_dir": str(self.config.state_dir),
        }

    def _endpoint_or_empty(self) -> str:
        try:
            return self.endpoint_url
        except BackendError:
            return ""
