"""Creating the KMS key whose policy names the measured image; for the vault's spec also the
vault table and the API's authorizer key (decision D16), whose policy lets only the API's role sign.

Another spec gets one symmetric key under ``alias/<spec name>``, its policy the spec's
template with the measured PCRs filled in."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.aws.backends import KEY_STORE_NAME, KeyMaterialStore, provision
from emulator.aws.backends.provision import CUSTOM_ID_TAG, CUSTOM_KEY_MATERIAL_TAG, StoredKey
from emulator.daemon.components.backend import BackendComponent
from emulator.daemon.components.base import Component, Context
from emulator.daemon.components.image import ImageComponent
from emulator.daemon.enclave_spec import EnclaveSpec
from vault.infra.authorizer_key import (
    ALIAS as AUTHORIZER_ALIAS,
)
from vault.infra.authorizer_key import (
    AuthorizerKeyParams,
    build_authorizer_key_policy,
    create_key_arguments,
)
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy

#: PCR8 of an image without a signing certificate, as the NSM attests it.
_UNSIGNED_PCR8 = "0" * 96


@dataclass(frozen=True)
class Provisioned:
    table_name: str
    key_arn: str
    #: The policy the KMS front enforces for ``key_arn``.
    key_policy: Mapping[str, Any]
    #: The API's signing key, and the policy the KMS front enforces for it.
    authorizer_key_arn: str = ""
    authorizer_key_policy: Mapping[str, Any] | None = None


def ensure_authorizer_key(kms: Any, store: KeyMaterialStore | None = None) -> str:
    """The ARN of the authorizer key under its alias, created if the backend has none.

    With ``store`` (``--persist`` on a backend that loses keys on restart) the key's id and
    private key are recorded first and given to the backend (``_custom_id_``,
    ``_custom_key_material_``): a recreated key has the same public key, so vault keys bound
    to its digest still open.
    """
    try:
        return str(kms.describe_key(KeyId=AUTHORIZER_ALIAS)["KeyMetadata"]["Arn"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
    arguments: dict[str, Any] = dict(create_key_arguments())
    if store is not None:
        stored = store.get(AUTHORIZER_ALIAS)
        if stored is None:
            private_key = ec.generate_private_key(ec.SECP256R1())
            der = private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            stored = StoredKey(str(uuid.uuid4()), der)
            store.put(AUTHORIZER_ALIAS, stored)
        arguments["Tags"] = [
            *arguments.get("Tags", []),
            {"TagKey": CUSTOM_ID_TAG, "TagValue": stored.key_id},
            {"TagKey": CUSTOM_KEY_MATERIAL_TAG, "TagValue": base64.b64encode(stored.material).decode()},
        ]
    metadata = kms.create_key(**arguments)["KeyMetadata"]
    kms.create_alias(AliasName=AUTHORIZER_ALIAS, TargetKeyId=metadata["KeyId"])
    return str(metadata["Arn"])


def policy_values(
    measurements: EnclaveMeasurements, *, pcr3: str, account_id: str, region: str, instance_role_arn: str
) -> dict[str, str]:
    """What a spec's key policy template is filled in with."""
    return {
        "PCR0": measurements.pcr0,
        "PCR1": measurements.pcr1,
        "PCR2": measurements.pcr2,
        "PCR3": pcr3,
        "PCR8": measurements.pcr8 or _UNSIGNED_PCR8,
        "ACCOUNT_ID": account_id,
        "REGION": region,
        "INSTANCE_ROLE_ARN": instance_role_arn,
    }


def ensure_spec_key(kms: Any, spec: EnclaveSpec) -> str:
    """The ARN of the spec's key under ``alias/<name>``, created if the backend has none."""
    alias = f"alias/{spec.name}"
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
    metadata = kms.create_key(Description=f"enclave key of {spec.name}")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
    return str(metadata["Arn"])


class ProvisionComponent(Component):
    name = "provision"
    is_step = True

    def __init__(
        self,
        context: Context,
        backend: BackendComponent,
        image: ImageComponent,
        *,
        pcr3: str,
        spec: EnclaveSpec,
    ) -> None:
        super().__init__(context, backend, image)
        self.backend = backend
        self.image = image
        self.pcr3 = pcr3
        self.spec = spec
        self._provisioned: Provisioned | None = None

    @property
    def provisioned(self) -> Provisioned:
        return self.require(self._provisioned)

    def start(self) -> None:
        if self.spec.key_policy.kind == "template":
            self._start_spec_key()
            return
        policy = build_key_policy(
            KeyPolicyParams(
                account_id=self.config.account_id,
                instance_role_arn=self.config.instance_role_arn,
                api_role_arn=self.config.api_role_arn,
                measurements=self.image.built.measurements,
                pcr3=self.pcr3,
            )
        )
        # The KMS front enforces the policy. It is not attached to the backend's key: moto
        # refuses DescribeKey under any key policy with a Deny on kms:* (it ignores the
        # conditions), and neither backend evaluates attestation conditions anyway.
        # Under --persist the table and key of the last run are reused (provision is
        # idempotent); where the backend loses keys on restart, the store recreates them.
        store = KeyMaterialStore(self.layout.backend / KEY_STORE_NAME) if self.config.persist else None
        result = provision(self.backend.backend, self.config.table_name, key_store=store)
        authorizer_arn = ensure_authorizer_key(
            self.backend.backend.client("kms"),
            store if self.backend.backend.accepts_custom_key_material else None,
        )
        authorizer_policy = build_authorizer_key_policy(
            AuthorizerKeyParams(account_id=self.config.account_id, api_role_arn=self.config.api_role_arn)
        )
        self._provisioned = Provisioned(
            self.config.table_name, result.key_arn, policy, authorizer_arn, authorizer_policy
        )
        self.context.facts.update(
            table_name=self.config.table_name, key_arn=result.key_arn, authorizer_key_arn=authorizer_arn
        )

    def _start_spec_key(self) -> None:
        # As for the vault, the KMS front enforces the policy; the backend's key carries none.
        config = self.config
        policy = self.spec.key_policy.render(
            policy_values(
                self.image.built.measurements,
                pcr3=self.pcr3,
                account_id=config.account_id,
                region=config.region,
                instance_role_arn=config.instance_role_arn,
            )
        )
        key_arn = ensure_spec_key(self.backend.backend.client("kms"), self.spec)
        self._provisioned = Provisioned("", key_arn, policy)
        self.context.facts.update(key_arn=key_arn)

    def address(self) -> str:
        return self._provisioned.key_arn if self._provisioned is not None else ""
