"""Drive the real ``lambda_handler`` with REST API (v1) proxy events against moto.

:func:`api_harness` starts moto in-process, creates the table and a KMS key, builds
the service with the test doubles of :mod:`unit.api.doubles` and installs it as the
resolver's dependency override for the duration of the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key
from moto import mock_aws

from unit.api.doubles import (
    PARENT_URL,
    KmsContextKeyDecryptor,
    MotoKmsWithDataKeyPairs,
    ParentAdapter,
    Responder,
    enclave_parent,
    session_for,
)
from unit.api.events import REGION, ApiResponse, invoke, rest_event
from vault.api import clients
from vault.api.config import ApiConfig
from vault.api.dependencies import build_service, get_service
from vault.api.handler import app
from vault.api.service import VaultService
from vault.common import hpke
from vault.common.authorization import KEY_SPEC as AUTHORIZER_KEY_SPEC
from vault.common.authorization import AuthorizationVerifier
from vault.common.suites import DEFAULT_SUITE
from vault.enclave.handler import RequestHandler
from vault.infra.key_policy import ENCRYPTION_CONTEXT_KEY
from vault.infra.table import create_table_kwargs

TABLE = "nitro-vault-test"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


#: One boto3 session for every test: moto resets boto3's default session at each
#: ``mock_aws`` start, which would reload the service models (~0.1 s) per test.
_BOTO = boto3.session.Session()


@dataclass
class ApiHarness:
    service: VaultService
    dynamodb: Any
    kms: MotoKmsWithDataKeyPairs
    key_arn: str
    parent: ParentAdapter
    enclave: RequestHandler
    env: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        return invoke(rest_event(method, path, **kwargs))

    def create(self, fields: dict[str, str]) -> str:
        response = self.call("POST", "/vaults", body=fields)
        assert response.status == 200, response.text
        vault_id: str = response.json["id"]
        return vault_id

    def items(self) -> list[dict[str, Any]]:
        """Every item of the table, in a stable order."""
        items = self.dynamodb.scan(TableName=TABLE)["Items"]
        return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))

    def vault_item(self, vault_id: str) -> dict[str, Any] | None:
        reply = self.dynamodb.get_item(
            TableName=TABLE, Key={"pk": {"S": f"VAULT##{vault_id}"}, "sk": {"S": "v0"}}
        )
        item: dict[str, Any] | None = reply.get("Item")
        return item

    def audit_items(self, vault_id: str) -> list[dict[str, Any]]:
        reply = self.dynamodb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"LOG##{vault_id}"}},
            ScanIndexForward=False,
        )
        items: list[dict[str, Any]] = reply["Items"]
        return items

    def respond_with(self, responder: Responder) -> None:
        self.parent.responder = responder


@contextmanager
def api_harness(
    monkeypatch: Any, *, authorizer: bool = False, **config_overrides: Any
) -> Iterator[ApiHarness]:
    """With ``authorizer``: a KMS signing key signs every decrypt, new vaults are bound to it,
    and the enclave handler refuses what it did not authorize (decision D16)."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    clients.dynamodb_client.cache_clear()
    clients.kms_client.cache_clear()
    with mock_aws():
        dynamodb = _BOTO.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**create_table_kwargs(TABLE))
        moto_kms = _BOTO.client("kms", region_name=REGION)
        key_arn = moto_kms.create_key(Description="vault root key")["KeyMetadata"]["Arn"]
        env = {"TABLE_NAME": TABLE, "KEY_ARN": key_arn, "VAULT_URL": PARENT_URL, "AWS_REGION": REGION}
        if authorizer:
            signing_key = moto_kms.create_key(
                Description="vault authorizer", KeySpec=AUTHORIZER_KEY_SPEC, KeyUsage="SIGN_VERIFY"
            )["KeyMetadata"]["Arn"]
            env["AUTHORIZER_KEY_ARN"] = signing_key
            config_overrides = {"authorizer_key_arn": signing_key, **config_overrides}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = replace(
            ApiConfig(table_name=TABLE, key_arn=key_arn, vault_url=PARENT_URL, region=REGION),
            **config_overrides,
        )
        kms = MotoKmsWithDataKeyPairs(moto_kms)
        enclave = RequestHandler(
            KmsContextKeyDecryptor(moto_kms), authorizer=AuthorizationVerifier() if authorizer else None
        )
        adapter = ParentAdapter(enclave_parent(enclave))
        service = build_service(config, dynamodb=dynamodb, kms=kms, parent_session=session_for(adapter))
        app.dependency_overrides[get_service] = lambda: service
        try:
            yield ApiHarness(service, dynamodb, kms, key_arn, adapter, enclave, env)
        finally:
            app.dependency_overrides.pop(get_service, None)
            get_service.cache_clear()
            clients.dynamodb_client.cache_clear()
            clients.kms_client.cache_clear()


def open_stored_field(harness: ApiHarness, vault_id: str, name: str, *, aad: str | None = None) -> str:
    """Open a stored field independently of the enclave: KMS Decrypt (with context) + HPKE open."""
    item = harness.vault_item(vault_id)
    assert item is not None
    der = harness.kms.decrypt(
        CiphertextBlob=item["_sk"]["B"], EncryptionContext={ENCRYPTION_CONTEXT_KEY: vault_id}
    )["Plaintext"]
    key = load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = bytes(item[name]["B"])
    recipient = hpke.Recipient(DEFAULT_SUITE, key)
    n_enc = DEFAULT_SUITE.n_enc
    plaintext = recipient.open(raw[:n_enc], raw[n_enc:], vault_id.encode(), (aad or name).encode())
    return plaintext.decode("utf-8")
