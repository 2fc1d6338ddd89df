"""The whole deployment: six stacks, their order, and the app-wide rules.

Deployment order (each stack depends on the ones before it):
``identity`` → ``network`` → ``key`` → ``api`` → ``vault`` (decryption tier) → ``canary``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from aws_cdk import App, Aspects, Environment, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from .api_stack import ApiStack
from .canary_stack import CanaryStack
from .config import CONTEXT_KEYS, PREFIX, VaultConfig, load_config
from .decryption_stack import DecryptionStack
from .guardrails import RoleGuardrails
from .identity_stack import IdentityStack
from .key_stack import UNSAFE_WARNING, KeyStack
from .naming import Names
from .network_stack import NetworkStack


@dataclass(frozen=True)
class VaultStacks:
    config: VaultConfig
    identity: IdentityStack
    network: NetworkStack
    key: KeyStack
    api: ApiStack
    decryption: DecryptionStack
    canary: CanaryStack

    def all(self) -> tuple[Stack, ...]:
        return (self.identity, self.network, self.key, self.api, self.decryption, self.canary)


def context_of(app: App) -> dict[str, Any]:
    return {PREFIX + key: app.node.try_get_context(PREFIX + key) for key in CONTEXT_KEYS}


def build(app: App, *, nag: bool = True) -> VaultStacks:
    """Add the vault's stacks to ``app``, configured from its context."""
    config = load_config(context_of(app))
    names = Names(config)
    env = Environment(account=config.account, region=config.region)

    def common(tier: str, description: str) -> dict[str, Any]:
        return {
            "stack_name": config.stack_name(tier),
            "env": env,
            "description": f"nitro-vault {description}",
        }

    identity = IdentityStack(
        app, "Identity", config=config, **common("identity", "permissions boundary and roles")
    )
    network = NetworkStack(app, "Network", config=config, **common("network", "isolated VPC and endpoints"))
    key_kwargs = common("key", "KMS key (decrypt only from an attested enclave)")
    if config.unsafe_allow_unattested_decrypt:
        key_kwargs["description"] = f"nitro-vault KMS key. UNSAFE: {UNSAFE_WARNING}"
    key = KeyStack(app, "Key", config=config, vpc_id=network.vpc.vpc_id, **key_kwargs)
    api = ApiStack(
        app,
        "Api",
        config=config,
        network=network,
        key_arn=key.key_arn,
        **common("api", "table, function and API"),
    )
    decryption = DecryptionStack(
        app, "Vault", config=config, network=network, **common("vault", "decryption tier (Nitro Enclaves)")
    )
    canary = CanaryStack(
        app,
        "Canary",
        config=config,
        network=network,
        key_arn=key.key_arn,
        table=api.table,
        **common("canary", "identity canaries"),
    )
    ordered: list[Stack] = [identity, network, key, api, decryption, canary]
    for before, after in itertools.pairwise(ordered):
        after.add_stack_dependency(before)
    for stack in ordered:
        Tags.of(stack).add("AppManagerCFNStackKey", stack.stack_name)
    for name, value in config.tags.items():
        Tags.of(app).add(name, value)

    Aspects.of(app).add(RoleGuardrails(names.boundary_arn))
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return VaultStacks(config, identity, network, key, api, decryption, canary)
