"""Key: the multi-region KMS key whose policy only lets an attested enclave decrypt (spec 7.2, 5.4).

The policy document is produced by :func:`vault.infra.key_policy.build_key_policy`, the
same builder whose output the emulator's KMS front enforces, so the deployed key and the
emulated one cannot drift apart. The decrypt statement carries the enclave's PCRs from
the first deployment on (decision D13); without measurements the stack is not built,
except in the documented unsafe mode. During an image upgrade the policy names the old
and the new image, one decrypt statement each, so instances of either kind can decrypt.

The key's administrators are the CDK bootstrap's CloudFormation execution roles of the
primary key's region and of every ``vault:replicaRegions`` region, the same list, in the
same order, in the primary's policy and in each replica's: CloudFormation creates each
copy with its own region's role (the lockout check), and a replica region's role calls
``ReplicateKey`` on the primary, which the primary's policy authorizes.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput, DefaultStackSynthesizer, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_kms as kms
from constructs import Construct

from vault.infra.key_policy import KeyPolicyParams, build_key_policy

from .config import UNSAFE_FLAG, VaultConfig
from .naming import Names

UNSAFE_WARNING = (
    f"{UNSAFE_FLAG} is set: the key policy lets the instance role decrypt vault keys WITHOUT "
    "enclave attestation. Never deploy this for real data."
)


def _default_synthesizer(stack: Stack) -> DefaultStackSynthesizer:
    synthesizer = stack.synthesizer
    if not isinstance(synthesizer, DefaultStackSynthesizer):
        raise TypeError("the key stack needs the default stack synthesizer to name its administrators")
    return synthesizer


def deployment_role_arn(stack: Stack, partition: str) -> str:
    """The role CloudFormation deploys ``stack`` with: one of the key's administrators.

    KMS creates a key only if its policy lets the creating principal call PutKeyPolicy
    (the lockout safety check), and only an administrator may (decision D17).
    """
    arn = _default_synthesizer(stack).cloud_formation_execution_role_arn.replace(
        "${AWS::Partition}", partition
    )
    # A region-agnostic stack leaves ${AWS::Region} for CloudFormation to substitute.
    return Fn.sub(arn) if "${" in arn else arn


def execution_role_arn(stack: Stack, config: VaultConfig, region: str) -> str:
    """The bootstrap's CloudFormation execution role of ``region`` (same qualifier and account).

    Only the default bootstrap names its roles after the region; a stack whose own
    execution role is named otherwise cannot name another region's, and is refused.
    """
    synthesizer = _default_synthesizer(stack)
    qualifier = synthesizer.bootstrap_qualifier or DefaultStackSynthesizer.DEFAULT_QUALIFIER

    def named(for_account: str, for_region: str) -> str:
        return (
            DefaultStackSynthesizer.DEFAULT_CLOUDFORMATION_ROLE_ARN.replace("${Qualifier}", qualifier)
            .replace("${AWS::AccountId}", for_account)
            .replace("${AWS::Partition}", config.partition)
            .replace("${AWS::Region}", for_region)
        )

    # The synthesizer leaves what the stack does not fix for CloudFormation to substitute.
    own_account = "${AWS::AccountId}" if Token.is_unresolved(stack.account) else stack.account
    own_region = "${AWS::Region}" if Token.is_unresolved(stack.region) else stack.region
    own = synthesizer.cloud_formation_execution_role_arn.replace("${AWS::Partition}", config.partition)
    if named(own_account, own_region) != own:
        raise TypeError(
            f"the key stack's execution role {own} is not the default bootstrap's: the execution "
            f"role of {region} cannot be named"
        )
    return named(config.account, region)


def administrator_role_arns(stack: Stack, config: VaultConfig) -> tuple[str, ...]:
    """Every copy's administrators: the primary region's execution role, then each replica region's.

    In the primary's stack the first is the stack's own role (substituted by CloudFormation
    when the stack is region-agnostic); in a replica's stack the replica's own region is
    one of ``vault:replicaRegions`` (the configuration checks it when the region is set).
    """
    primary_region = config.primary_key_region
    if primary_region is None:
        primary = deployment_role_arn(stack, config.partition)
    else:
        primary = execution_role_arn(stack, config, primary_region)
    return (primary, *(execution_role_arn(stack, config, region) for region in config.replica_regions))


def key_policy_params(
    config: VaultConfig, *, region: str, vpc_id: str | None, admin_role_arns: tuple[str, ...] = ()
) -> KeyPolicyParams:
    """The builder's parameters for this deployment (also used by tests to recompute the policy)."""
    names = Names(config)
    return KeyPolicyParams(
        account_id=config.account,
        instance_role_arn=names.instance_role_arn,
        api_role_arn=names.api_role_arn,
        measurements=config.measurements,
        additional_measurements=config.additional_measurements,
        partition=config.partition,
        api_function_arn=(
            f"arn:{config.partition}:lambda:{region}:{config.account}:function:{names.api_function_name}"
        ),
        vpc_id=vpc_id,
        admin_role_arn=admin_role_arns[0] if admin_role_arns else None,
        additional_admin_role_arns=admin_role_arns[1:],
        allow_unattested_decrypt=config.unsafe_allow_unattested_decrypt,
    )


class KeyStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: VaultConfig, vpc_id: str, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # Raises MeasurementsError when measurements are missing outside unsafe mode.
        #: The role this stack is deployed with, which creates this copy of the key.
        self.admin_role_arn = deployment_role_arn(self, config.partition)
        self.admin_role_arns = administrator_role_arns(self, config)
        policy = build_key_policy(
            key_policy_params(config, region=self.region, vpc_id=vpc_id, admin_role_arns=self.admin_role_arns)
        )

        if config.primary_key_arn is not None:
            # A second region: replicate the primary key under the same policy.
            replica = kms.CfnReplicaKey(
                self,
                "VaultKey",
                primary_key_arn=config.primary_key_arn,
                key_policy=policy,
                pending_window_in_days=7,
                description="nitro-vault key pair wrapping key (replica)",
            )
            key_resource: kms.CfnKey | kms.CfnReplicaKey = replica
            self.key_arn = replica.attr_arn
            self.key_id = replica.attr_key_id
        else:
            key = kms.CfnKey(
                self,
                "VaultKey",
                description="nitro-vault key pair wrapping key",
                key_spec="SYMMETRIC_DEFAULT",
                key_usage="ENCRYPT_DECRYPT",
                multi_region=True,
                # Rotation keeps old key material, so existing vaults stay decryptable.
                enable_key_rotation=True,
                pending_window_in_days=7,
                key_policy=policy,
            )
            key_resource = key
            self.key_arn = key.attr_arn
            self.key_id = key.attr_key_id
        # Losing the key loses every vault: never delete it with the stack.
        key_resource.apply_removal_policy(RemovalPolicy.RETAIN)

        kms.CfnAlias(self, "VaultKeyAlias", alias_name=f"alias/{self.stack_name}", target_key_id=self.key_id)

        if config.unsafe_allow_unattested_decrypt:
            Annotations.of(self).add_warning_v2("vault:unsafe-unattested-decrypt", UNSAFE_WARNING)

        CfnOutput(self, "KeyArn", value=self.key_arn)
        CfnOutput(
            self, "AttestedDecrypt", value="false" if config.unsafe_allow_unattested_decrypt else "true"
        )
