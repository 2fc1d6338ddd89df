"""The API Lambda's configuration, read once from the environment into one object."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from vault.api.reveal_policy import POLICY_ENV, RevealPolicy, RevealPolicyError, load_policy

DEFAULT_PARENT_TIMEOUT_SECONDS = 5.0
#: API Gateway gives the integration 10 s; a parent timeout beyond that can never be observed.
MAX_PARENT_TIMEOUT_SECONDS = 10.0


class ConfigError(ValueError):
    """The environment does not describe a usable configuration; ``str()`` names the variables."""


@dataclass(frozen=True)
class ApiConfig:
    table_name: str
    key_arn: str
    #: Base URL of the parent (``https://<domain>``); decrypt posts to ``{vault_url}/decrypt``.
    vault_url: str
    region: str
    parent_timeout_seconds: float = DEFAULT_PARENT_TIMEOUT_SECONDS
    #: A CA bundle to verify the parent's certificate with (the emulator's test CA);
    #: ``None`` verifies against the default trust store.
    parent_ca_bundle: str | None = None
    dynamodb_endpoint_url: str | None = None
    kms_endpoint_url: str | None = None
    #: Decision D14: when set, audit items expire this many days after they were written.
    audit_retention_days: int | None = None
    #: Decision D16: the asymmetric KMS key that signs each decrypt's authorization and
    #: whose public key new vaults are bound to. Without it the API signs nothing, and an
    #: enclave that checks authorizations refuses its decrypts.
    authorizer_key_arn: str | None = None
    #: Who may receive which fields and expressions (``REVEAL_POLICY``); ``None``: anyone, anything.
    reveal_policy: RevealPolicy | None = None
    #: ``SEARCH_INDEX=on``: searchable fields get blind-index tokens and ``POST /vaults/search``
    #: answers. Needs the authorizer key: every index request is signed.
    search_index: bool = False

    @property
    def decrypt_url(self) -> str:
        return f"{self.vault_url}/decrypt"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiConfig:
        env = os.environ if environ is None else environ
        required = {
            name: env.get(name, "").strip() for name in ("TABLE_NAME", "KEY_ARN", "VAULT_URL", "AWS_REGION")
        }
        missing = sorted(name for name, value in required.items() if not value)
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            table_name=required["TABLE_NAME"],
            key_arn=required["KEY_ARN"],
            vault_url=_base_url("VAULT_URL", required["VAULT_URL"]),
            region=required["AWS_REGION"],
            parent_timeout_seconds=_timeout(env.get("PARENT_TIMEOUT_SECONDS", "")),
            parent_ca_bundle=_ca_bundle(env.get("PARENT_CA_BUNDLE", "")),
            dynamodb_endpoint_url=_optional_url(
                "DYNAMODB_ENDPOINT_URL", env.get("DYNAMODB_ENDPOINT_URL", "")
            ),
            kms_endpoint_url=_optional_url("KMS_ENDPOINT_URL", env.get("KMS_ENDPOINT_URL", "")),
            audit_retention_days=_retention(env.get("AUDIT_RETENTION_DAYS", "")),
            authorizer_key_arn=env.get("AUTHORIZER_KEY_ARN", "").strip() or None,
            reveal_policy=reveal_policy(env),
            search_index=_search_index(env, authorizer=bool(env.get("AUTHORIZER_KEY_ARN", "").strip())),
        )


def reveal_policy(env: Mapping[str, str]) -> RevealPolicy | None:
    """The policy in ``REVEAL_POLICY``; an invalid one is a :class:`ConfigError` saying why."""
    try:
        return load_policy(env)
    except RevealPolicyError as exc:
        raise ConfigError(f"{POLICY_ENV}: {exc}") from None


def _search_index(env: Mapping[str, str], *, authorizer: bool) -> bool:
    value = env.get("SEARCH_INDEX", "").strip().lower()
    if value in ("", "off"):
        return False
    if value != "on":
        raise ConfigError("SEARCH_INDEX must be on or off")
    if not authorizer:
        # An unsigned index request would make the enclave an HMAC oracle; it refuses them.
        raise ConfigError("SEARCH_INDEX=on needs AUTHORIZER_KEY_ARN")
    return True


def _base_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name} must be an http(s) base URL such as https://vault.example.com")
    # One spelling of the base, so that "{base}/decrypt" never contains "//".
    return value.rstrip("/")


def _optional_url(name: str, value: str) -> str | None:
    value = value.strip()
    return _base_url(name, value) if value else None


def _timeout(value: str) -> float:
    value = value.strip()
    if not value:
        return DEFAULT_PARENT_TIMEOUT_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError("PARENT_TIMEOUT_SECONDS must be a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_PARENT_TIMEOUT_SECONDS:
        raise ConfigError(f"PARENT_TIMEOUT_SECONDS must be within (0, {MAX_PARENT_TIMEOUT_SECONDS:g}]")
    return seconds


def _ca_bundle(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    # Checked now: requests would otherwise fail only at the first decrypt, as a TLS error.
    if not os.path.isfile(value):
        raise ConfigError("PARENT_CA_BUNDLE must name an existing CA bundle file")
    return value


def _retention(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        days = int(value)
    except ValueError:
        raise ConfigError("AUDIT_RETENTION_DAYS must be a whole number of days") from None
    if days < 1:
        raise ConfigError("AUDIT_RETENTION_DAYS must be at least 1")
    return days
