"""Deployment settings, read once from CDK context (``cdk.json``, ``cdk.context.json`` or ``-c``).

Every key lives under the ``vault:`` prefix. Values given with ``-c`` arrive as strings,
values from ``cdk.json`` keep their JSON type; the readers below accept both. The
settings are validated here so that a bad value stops ``cdk synth`` with a message
naming the key, before any construct is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vault.api.reveal_policy import RevealPolicyError, deployable
from vault.infra.key_policy import EnclaveMeasurements, MeasurementsError

PREFIX = "vault:"
#: Relative paths in context are relative to the directory holding ``cdk.json``.
CDK_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = CDK_DIR.parent

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_PREFIX_NAME = re.compile(r"^[a-z][a-z0-9-]{2,24}$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CIDR = re.compile(r"^\d{1,3}\.\d{1,3}\.0\.0/16$")
_MULTI_REGION_KEY_ARN = re.compile(
    r"^arn:(?P<partition>[a-z-]+):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):key/mrk-[0-9a-f]{32}$"
)

#: The context key that switches on the documented unsafe mode (key policy without PCRs).
UNSAFE_FLAG = f"{PREFIX}unsafeAllowUnattestedDecrypt"
#: Every setting this app reads (without the prefix).
CONTEXT_KEYS = (
    "account",
    "region",
    "partition",
    "prefix",
    "domainName",
    "hostedZoneId",
    "hostedZoneName",
    "artifactsDir",
    "artifactBucket",
    "artifactKey",
    "lambdaDependencies",
    "measurements",
    "unsafeAllowUnattestedDecrypt",
    "vpcCidr",
    "enableRemoteAccess",
    "enableDnsFirewall",
    "primaryKeyArn",
    "replicaRegions",
    "apiVpcEndpointId",
    "auditRetentionDays",
    "logLevel",
    "alarmEmail",
    "apiRateLimit",
    "apiBurstLimit",
    "scaling",
    "tags",
    "revealPolicy",
)
#: The policy travels in one Lambda environment variable; Lambda allows 4 KB for all of them.
MAX_REVEAL_POLICY_BYTES = 3072


class ConfigError(ValueError):
    """A context value is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class ScalingThresholds:
    """Alarm thresholds of the decryption tier (upstream's stack parameters, same defaults)."""

    active_flows_high: float = 1000
    processed_bytes_high: float = 104_857_600
    new_flows_high: float = 500
    cpu_high: float = 70
    active_flows_low: float = 200
    cpu_low: float = 30


@dataclass(frozen=True)
class ArtifactSource:
    """Where the instances fetch the enclave EIF and the parent's wheels from.

    Either a local directory (uploaded as a CDK asset) or an object that a build pipeline
    already put in S3; the user data handles both the same way (a zip of the directory).
    """

    directory: Path | None = None
    bucket: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class VaultConfig:
    account: str
    domain_name: str
    hosted_zone_id: str
    hosted_zone_name: str
    artifacts: ArtifactSource
    lambda_dependencies: Path
    #: The current enclave image; ``None`` only in unsafe mode.
    measurements: EnclaveMeasurements | None
    region: str | None = None
    partition: str = "aws"
    prefix: str = "nitro-vault"
    unsafe_allow_unattested_decrypt: bool = False
    vpc_cidr: str = "10.0.0.0/16"
    enable_remote_access: bool = False
    enable_dns_firewall: bool = True
    #: Set in a replica region: the multi-region key this region's key replicates.
    primary_key_arn: str | None = None
    #: Every region that holds (or will hold) a replica of the key, the same list in every
    #: region's deployment. Their CloudFormation execution roles administer every copy of
    #: the key, so that a replica region's deployment may replicate the primary key.
    replica_regions: tuple[str, ...] = ()
    api_vpc_endpoint_id: str | None = None
    #: Days an audit item lives (decision D14); 0 keeps audit items forever.
    audit_retention_days: int = 0
    log_level: str = "INFO"
    alarm_email: str | None = None
    api_rate_limit: int = 100
    api_burst_limit: int = 200
    scaling: ScalingThresholds = field(default_factory=ScalingThresholds)
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Further images the key policy lets decrypt, each in its own statement: the other side
    #: of a rolling image upgrade.
    additional_measurements: tuple[EnclaveMeasurements, ...] = ()
    #: The validated reveal policy as compact JSON (``REVEAL_POLICY``); ``None``: no policy.
    reveal_policy: str | None = None

    def stack_name(self, tier: str) -> str:
        return f"{self.prefix}-{tier}"

    @property
    def primary_key_region(self) -> str | None:
        """The region of :attr:`primary_key_arn`; ``None`` when this deployment holds the primary."""
        if self.primary_key_arn is None:
            return None
        match = _MULTI_REGION_KEY_ARN.match(self.primary_key_arn)
        if match is None:
            raise ConfigError(f"{PREFIX}primaryKeyArn is not a multi-region key ARN")
        return match["region"]


def _raw(context: Mapping[str, Any], name: str) -> Any:
    value = context.get(PREFIX + name)
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _string(context: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    value = _raw(context, name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{PREFIX}{name} must be a string")
    return value.strip()


def _required(context: Mapping[str, Any], name: str, why: str) -> str:
    value = _string(context, name)
    if value is None:
        raise ConfigError(f"{PREFIX}{name} is required: {why}")
    return value


def _bool(context: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _raw(context, name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{PREFIX}{name} must be true or false")


def _int(context: Mapping[str, Any], name: str, default: int, minimum: int = 0) -> int:
    value = _raw(context, name)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{PREFIX}{name} must be an integer") from None
    if isinstance(value, bool) or number < minimum:
        raise ConfigError(f"{PREFIX}{name} must be an integer of at least {minimum}")
    return number


def _mapping(context: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = _raw(context, name)
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"{PREFIX}{name} must be a JSON object") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{PREFIX}{name} must be a JSON object")
    return value


def _path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (CDK_DIR / path).resolve()


def _reveal_policy(context: Mapping[str, Any]) -> str | None:
    """``vault:revealPolicy``: a JSON policy file, validated as the API validates it at cold start."""
    value = _string(context, "revealPolicy")
    if not value:
        return None
    path = _path(value)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{PREFIX}revealPolicy: cannot read {path} ({exc.__class__.__name__})") from None
    try:
        compact = deployable(text)
    except RevealPolicyError as exc:
        raise ConfigError(f"{PREFIX}revealPolicy: {exc}") from None
    if len(compact.encode("utf-8")) > MAX_REVEAL_POLICY_BYTES:
        raise ConfigError(
            f"{PREFIX}revealPolicy is {len(compact)} bytes as compact JSON; at most "
            f"{MAX_REVEAL_POLICY_BYTES} fit in the API's environment"
        )
    return compact


def _scaling(context: Mapping[str, Any]) -> ScalingThresholds:
    overrides = _mapping(context, "scaling")
    known = set(ScalingThresholds.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{PREFIX}scaling has unknown thresholds {unknown}; known: {sorted(known)}")
    try:
        return ScalingThresholds(**{key: float(value) for key, value in overrides.items()})
    except (TypeError, ValueError):
        raise ConfigError(f"{PREFIX}scaling thresholds must be numbers") from None


def _artifacts(context: Mapping[str, Any]) -> ArtifactSource:
    directory = _string(context, "artifactsDir")
    bucket = _string(context, "artifactBucket")
    key = _string(context, "artifactKey")
    if directory is not None and (bucket is not None or key is not None):
        raise ConfigError(f"give either {PREFIX}artifactsDir or {PREFIX}artifactBucket/artifactKey, not both")
    if directory is not None:
        path = _path(directory)
        eif = path / "enclave-vault.eif"
        wheels = path / "wheels"
        if not eif.is_file() or not wheels.is_dir():
            raise ConfigError(
                f"{PREFIX}artifactsDir {path} must hold enclave-vault.eif and wheels/ "
                "(see the README: build the EIF, then `python -m vault_cdk.build parent-wheels`)"
            )
        return ArtifactSource(directory=path)
    if bucket is None or key is None:
        raise ConfigError(
            f"the decryption tier needs its artifacts: set {PREFIX}artifactsDir, "
            f"or {PREFIX}artifactBucket and {PREFIX}artifactKey (a zip of the same layout)"
        )
    return ArtifactSource(bucket=bucket, key=key)


def _measurement_paths(context: Mapping[str, Any]) -> list[str]:
    """``vault:measurements``: one path, comma-separated paths, or a JSON array of paths."""
    value = _raw(context, "measurements")
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{PREFIX}measurements is not a valid JSON array") from None
        else:
            value = text.split(",")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(
            f"{PREFIX}measurements must be a path, comma-separated paths or a JSON array of paths"
        )
    paths = [item.strip() for item in value]
    if any(not path for path in paths):
        raise ConfigError(f"{PREFIX}measurements has an empty entry")
    return paths


def _measurements(context: Mapping[str, Any], unsafe: bool) -> tuple[EnclaveMeasurements, ...]:
    """Every image the key may be released to, the current one (the first listed) first."""
    paths = _measurement_paths(context)
    if not paths:
        if unsafe:
            return ()
        raise MeasurementsError(
            f"the key stack needs the enclave measurements: set {PREFIX}measurements to the JSON "
            "that `nitro-cli build-enclave` printed. Only for a throw-away test deployment, "
            f"-c {UNSAFE_FLAG}=true synthesizes a key policy that lets the instance role "
            "decrypt WITHOUT attestation."
        )
    if unsafe:
        raise ConfigError(f"{UNSAFE_FLAG} and {PREFIX}measurements exclude each other")
    images = tuple(EnclaveMeasurements.from_file(_path(path)) for path in paths)
    if len(set(images)) != len(images):
        raise ConfigError(f"{PREFIX}measurements lists the same enclave image twice")
    return images


def _replica_regions(context: Mapping[str, Any]) -> tuple[str, ...]:
    """``vault:replicaRegions``: one region, comma-separated regions or a JSON array of them."""
    value = _raw(context, "replicaRegions")
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ConfigError(f"{PREFIX}replicaRegions is not a valid JSON array") from None
        else:
            value = text.split(",")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{PREFIX}replicaRegions must be a region, comma-separated regions or a JSON array")
    regions = tuple(item.strip() for item in value)
    for region in regions:
        if not _REGION.match(region):
            raise ConfigError(f"{PREFIX}replicaRegions: {region!r} is not a region name")
    if len(set(regions)) != len(regions):
        raise ConfigError(f"{PREFIX}replicaRegions lists a region twice")
    return regions


def _check_key_regions(
    *,
    account: str,
    partition: str,
    region: str | None,
    primary_key_arn: str | None,
    replicas: tuple[str, ...],
) -> None:
    """Refuse a multi-region layout whose key policies would refuse its own deployments.

    The primary key's policy names the execution roles of the regions listed here; a
    replica deployed in a region it does not name fails at ``ReplicateKey``.
    """
    if primary_key_arn is None:
        if region is not None and region in replicas:
            raise ConfigError(f"{PREFIX}replicaRegions lists the primary key's region {region}")
        return
    match = _MULTI_REGION_KEY_ARN.match(primary_key_arn)
    if match is None:
        raise ConfigError(
            f"{PREFIX}primaryKeyArn must be a multi-region key ARN (arn:<partition>:kms:<region>:"
            "<account>:key/mrk-...)"
        )
    if match["account"] != account or match["partition"] != partition:
        raise ConfigError(
            f"{PREFIX}primaryKeyArn must name a key of account {account} in partition {partition}: "
            "a multi-region key replicates only within its account"
        )
    primary = match["region"]
    if region == primary:
        raise ConfigError(
            f"{PREFIX}primaryKeyArn is in {primary}, this deployment's region: a replica needs another"
        )
    if primary in replicas:
        raise ConfigError(f"{PREFIX}replicaRegions lists the primary key's region {primary}")
    if not replicas or (region is not None and region not in replicas):
        where = region or "the replica's region"
        raise ConfigError(
            f"{PREFIX}replicaRegions must list {where}: the primary key's policy lets only the listed "
            "regions' execution roles replicate it (deploy the primary with the same list first)"
        )


def load_config(context: Mapping[str, Any]) -> VaultConfig:
    """Read and validate every ``vault:`` setting from a context mapping."""
    account = _required(context, "account", "the instance role ARN (and so PCR3) names the account")
    if not _ACCOUNT.match(account):
        raise ConfigError(f"{PREFIX}account must be 12 digits")
    region = _string(context, "region")
    if region is not None and not _REGION.match(region):
        raise ConfigError(f"{PREFIX}region {region!r} is not a region name")
    prefix = _string(context, "prefix") or "nitro-vault"
    if not _PREFIX_NAME.match(prefix):
        raise ConfigError(f"{PREFIX}prefix must be 3-25 lowercase letters, digits or hyphens")
    domain = _required(context, "domainName", "the vault's internal TLS endpoint is served under it").lower()
    if not _DOMAIN.match(domain):
        raise ConfigError(f"{PREFIX}domainName {domain!r} is not a DNS name")
    zone_name = _required(context, "hostedZoneName", "the certificate is validated by DNS in that zone")
    zone_name = zone_name.lower().rstrip(".")
    if domain != zone_name and not domain.endswith("." + zone_name):
        raise ConfigError(f"{PREFIX}domainName must lie inside {PREFIX}hostedZoneName")
    vpc_cidr = _string(context, "vpcCidr") or "10.0.0.0/16"
    if not _CIDR.match(vpc_cidr):
        raise ConfigError(f"{PREFIX}vpcCidr must be a /16 such as 10.0.0.0/16")
    unsafe = _bool(context, "unsafeAllowUnattestedDecrypt", False)
    log_level = (_string(context, "logLevel", "INFO") or "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{PREFIX}logLevel must be DEBUG, INFO, WARNING or ERROR")
    tags = _mapping(context, "tags")
    images = _measurements(context, unsafe)
    partition = _string(context, "partition", "aws") or "aws"
    primary_key_arn = _string(context, "primaryKeyArn")
    replicas = _replica_regions(context)
    _check_key_regions(
        account=account,
        partition=partition,
        region=region,
        primary_key_arn=primary_key_arn,
        replicas=replicas,
    )
    return VaultConfig(
        account=account,
        region=region,
        partition=partition,
        prefix=prefix,
        domain_name=domain,
        hosted_zone_id=_required(context, "hostedZoneId", "the certificate is validated by DNS in that zone"),
        hosted_zone_name=zone_name,
        artifacts=_artifacts(context),
        lambda_dependencies=_path(_string(context, "lambdaDependencies", "build/lambda-deps") or ""),
        measurements=images[0] if images else None,
        additional_measurements=images[1:],
        unsafe_allow_unattested_decrypt=unsafe,
        vpc_cidr=vpc_cidr,
        enable_remote_access=_bool(context, "enableRemoteAccess", False),
        enable_dns_firewall=_bool(context, "enableDnsFirewall", True),
        primary_key_arn=primary_key_arn,
        replica_regions=replicas,
        api_vpc_endpoint_id=_string(context, "apiVpcEndpointId"),
        audit_retention_days=_int(context, "auditRetentionDays", 0),
        log_level=log_level,
        alarm_email=_string(context, "alarmEmail"),
        api_rate_limit=_int(context, "apiRateLimit", 100, minimum=1),
        api_burst_limit=_int(context, "apiBurstLimit", 200, minimum=1),
        scaling=_scaling(context),
        tags={str(key): str(value) for key, value in tags.items()},
        reveal_policy=_reveal_policy(context),
    )
