"""The emulator's components and the order they start in.

    component       needs (the components it reads)
    backend         -
    image           -
    pki             -
    imds            -  (serves the instance role's credential)
    dynamodb-proxy  backend
    provision       backend, image
    kms-front       backend, provision, pki
    vsock-proxy     kms-front
    nsm             pki
    enclave         image, nsm, vsock-proxy
    parent          imds
    gateway         provision, kms-front, parent, dynamodb-proxy

The enclave spec of the run (:mod:`emulator.daemon.enclave_spec`; the vault's by default)
sets the image, the enclave's entry point and ports, the vsock-proxy's port and the key
policy; a spec other than the vault's runs neither dynamodb-proxy, parent nor gateway.

A component starts as soon as what it needs is up; independent ones start in
parallel. Product processes (parent, enclave, API
gateway with the Lambda handler) each run as their own process with their own,
complete environment; the emulated AWS and Nitro services (KMS front, vsock-proxy,
NSM, IMDS, the DynamoDB fault proxy) run as servers inside the daemon. Faults are
injected into these components at run time by :mod:`emulator.faults.injector`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from emulator.daemon.components.backend import BackendComponent
from emulator.daemon.components.base import Component, Context
from emulator.daemon.components.credentials import Credentials, make_credentials
from emulator.daemon.components.dynamodb_proxy import DynamoDbProxyComponent
from emulator.daemon.components.enclave import EnclaveComponent
from emulator.daemon.components.gateway import GatewayComponent
from emulator.daemon.components.image import ImageComponent
from emulator.daemon.components.imds import ImdsComponent
from emulator.daemon.components.kms_front import KmsFrontComponent
from emulator.daemon.components.nsm import NsmComponent
from emulator.daemon.components.parent import ParentComponent
from emulator.daemon.components.pki import PkiComponent
from emulator.daemon.components.provision import ProvisionComponent
from emulator.daemon.components.vsock_proxy import VsockProxyComponent
from emulator.nitro.pki import DEFAULT_INSTANCE_ID as INSTANCE_ID
from vault.infra.key_policy import pcr3_for_role_arn


@dataclass(frozen=True)
class EmulatorParts:
    """Every component of one emulator run, by role."""

    credentials: Credentials
    backend: BackendComponent
    image: ImageComponent
    pki: PkiComponent
    imds: ImdsComponent
    dynamodb_proxy: DynamoDbProxyComponent
    provision: ProvisionComponent
    kms_front: KmsFrontComponent
    vsock_proxy: VsockProxyComponent
    nsm: NsmComponent
    enclave: EnclaveComponent
    parent: ParentComponent
    gateway: GatewayComponent

    #: The vault's spec runs the vault's parent, gateway and table proxy; another spec only its enclave.
    vault_api: bool = True

    @property
    def components(self) -> list[Component]:
        """In the order of the status table (those this run starts)."""
        vault_only = () if self.vault_api else (self.dynamodb_proxy, self.parent, self.gateway)
        every = [
            self.backend,
            self.image,
            self.pki,
            self.imds,
            self.dynamodb_proxy,
            self.provision,
            self.kms_front,
            self.vsock_proxy,
            self.nsm,
            self.enclave,
            self.parent,
            self.gateway,
        ]
        return [component for component in every if component not in vault_only]


def build_components(context: Context) -> EmulatorParts:
    config = context.config
    # The enclave spec (the vault's unless --enclave named one), read once per run.
    spec = config.spec
    credentials = make_credentials(config)
    # PCR3 of any enclave on the simulated instance: fixed by the instance role.
    pcr3 = pcr3_for_role_arn(config.instance_role_arn)
    context.facts["pcr3"] = pcr3
    context.facts["started_at"] = time.time()
    if config.sigv4:
        # Published so tests and the demo can sign; they are test-only keys of this emulator run.
        context.facts["sigv4_principal"] = credentials.principals[0].to_json()
        context.facts["sigv4_principals"] = [principal.to_json() for principal in credentials.principals]
    backend = BackendComponent(context)
    image = ImageComponent(context, spec)
    pki = PkiComponent(context)
    imds = ImdsComponent(context, instance=credentials.instance)
    dynamodb_proxy = DynamoDbProxyComponent(context, backend)
    provision = ProvisionComponent(context, backend, image, pcr3=pcr3, spec=spec)
    kms_front = KmsFrontComponent(context, backend, provision, pki, credentials=credentials)
    vsock_proxy = VsockProxyComponent(context, kms_front, spec=spec)
    nsm = NsmComponent(context, pki)
    enclave = EnclaveComponent(context, image, nsm, vsock_proxy, pcr3=pcr3, spec=spec)
    parent = ParentComponent(context, imds)
    gateway = GatewayComponent(context, provision, kms_front, parent, dynamodb_proxy, credentials=credentials)
    return EmulatorParts(
        credentials=credentials,
        backend=backend,
        image=image,
        pki=pki,
        imds=imds,
        dynamodb_proxy=dynamodb_proxy,
        provision=provision,
        kms_front=kms_front,
        vsock_proxy=vsock_proxy,
        nsm=nsm,
        enclave=enclave,
        parent=parent,
        gateway=gateway,
        vault_api=spec.vault_api,
    )


__all__ = ["INSTANCE_ID", "EmulatorParts", "build_components"]
