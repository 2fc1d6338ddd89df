"""The KMS attestation front: verifies Recipient attestation, evaluates the key policy."""

from __future__ import annotations

from emulator.aws.backends.moto_server import MotoBackend
from emulator.aws.kms.front import Identity, KmsFront
from emulator.aws.kms.moto_keys import MotoKeyAgreement
from emulator.aws.kms.quotas import QuotaSettings, RequestQuotas
from emulator.daemon.components.backend import BackendComponent
from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.components.credentials import Credentials
from emulator.daemon.components.pki import PkiComponent
from emulator.daemon.components.provision import ProvisionComponent
from emulator.host.process import port_open


class KmsFrontComponent(Component):
    name = "kms-front"
    runs_in_daemon = True

    def __init__(
        self,
        context: Context,
        backend: BackendComponent,
        provision: ProvisionComponent,
        pki: PkiComponent,
        *,
        credentials: Credentials,
    ) -> None:
        super().__init__(context, backend, provision, pki)
        self.backend = backend
        self.provision = provision
        self.pki = pki
        self.credentials = credentials
        self._front: KmsFront | None = None

    @property
    def front(self) -> KmsFront:
        return self.require(self._front)

    @property
    def running_front(self) -> KmsFront | None:
        """The front while it runs (``None`` before start and after stop)."""
        return self._front

    def start(self) -> None:
        instance, api = self.credentials.instance, self.credentials.api
        backend = self.backend.backend
        provisioned = self.provision.provisioned
        front = KmsFront(
            backend=backend.upstream("kms"),
            account_id=self.config.account_id,
            trusted_root=self.pki.pki.root.certificate,
            identities={
                instance.access_key_id: Identity(self.config.instance_role_arn, instance.secret_access_key),
                api.access_key_id: Identity(self.config.api_role_arn, api.secret_access_key),
            },
            key_policies={
                provisioned.key_arn: provisioned.key_policy,
                **(
                    {provisioned.authorizer_key_arn: provisioned.authorizer_key_policy}
                    if provisioned.authorizer_key_policy is not None
                    else {}
                ),
            },
            region=self.config.region,
            backend_credentials=(backend.access_key_id, backend.secret_access_key),
            # moto serves in this process and holds the keys, but has no DeriveSharedSecret.
            key_agreement=MotoKeyAgreement() if isinstance(backend, MotoBackend) else None,
        )
        if self.config.production_limits:
            front.quotas = RequestQuotas(
                QuotaSettings(region=self.config.region, scale=self.config.kms_quota_scale)
            )
        front.start()
        self._front = front
        self.context.facts["kms_endpoint"] = front.endpoint_url

    def stop(self) -> None:
        front, self._front = self._front, None
        if front is not None:
            front.stop()

    def health(self) -> Health:
        return Health(self._front is not None and port_open(int(self._front.port)))

    def address(self) -> str:
        return self._front.endpoint_url if self._front is not None else ""
