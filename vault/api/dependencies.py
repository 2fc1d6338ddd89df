"""Builds the :class:`VaultService` from the configuration, once per Lambda container.

Routes receive the service through Powertools' ``Depends(get_service)``; tests and the
emulator may replace it with ``app.dependency_overrides[get_service]``.
"""

from __future__ import annotations

import functools
from typing import Any

import requests

from vault.api.blind_index import BlindIndex
from vault.api.clients import dynamodb_client, kms_client
from vault.api.config import ApiConfig
from vault.api.kms import KmsAuthorizationSigner, KmsKeyPairGenerator
from vault.api.observability import logger
from vault.api.parent import ParentClient
from vault.api.service import VaultService
from vault.api.store import VaultStore


def build_service(
    config: ApiConfig,
    *,
    dynamodb: Any | None = None,
    kms: Any | None = None,
    parent_session: requests.Session | None = None,
) -> VaultService:
    """The service for ``config``; clients default to the container-wide boto3 clients."""
    dynamodb = (
        dynamodb if dynamodb is not None else dynamodb_client(config.region, config.dynamodb_endpoint_url)
    )
    kms = kms if kms is not None else kms_client(config.region, config.kms_endpoint_url)
    authorizer = (
        KmsAuthorizationSigner(kms, config.authorizer_key_arn)
        if config.authorizer_key_arn is not None
        else None
    )
    key_pairs = KmsKeyPairGenerator(kms, config.key_arn, authorizer)
    return VaultService(
        store=VaultStore(dynamodb, config.table_name),
        key_pairs=key_pairs,
        authorizer=authorizer,
        parent=ParentClient(
            config.decrypt_url,
            timeout=config.parent_timeout_seconds,
            ca_bundle=config.parent_ca_bundle,
            session=parent_session,
        ),
        region=config.region,
        audit_retention_days=config.audit_retention_days,
        reveal_policy=config.reveal_policy,
        blind_index=BlindIndex(dynamodb, config.table_name, key_pairs) if config.search_index else None,
    )


@functools.cache
def warn_no_reveal_policy() -> None:
    """Said once per container: without a policy every caller may decrypt every field."""
    logger.warning("No reveal policy (REVEAL_POLICY): every caller may decrypt every field")


@functools.cache
def get_service() -> VaultService:
    config = ApiConfig.from_env()
    if config.reveal_policy is None:
        warn_no_reveal_policy()
    return build_service(config)
