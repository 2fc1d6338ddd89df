"""Configuration is read from the environment once, into one object, and checked."""

from __future__ import annotations

import pytest

from vault.api.config import DEFAULT_PARENT_TIMEOUT_SECONDS, ApiConfig, ConfigError

BASE = {
    "TABLE_NAME": "vault",
    "KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/abc",
    "VAULT_URL": "https://vault.example.com/",
    "AWS_REGION": "eu-west-1",
}


def test_required_and_defaults() -> None:
    config = ApiConfig.from_env(BASE)
    assert config.table_name == "vault"
    assert config.key_arn == BASE["KEY_ARN"]
    assert config.region == "eu-west-1"
    # One spelling of the base URL, so the decrypt URL never has "//".
    assert config.vault_url == "https://vault.example.com"
    assert config.decrypt_url == "https://vault.example.com/decrypt"
    assert config.parent_timeout_seconds == DEFAULT_PARENT_TIMEOUT_SECONDS == 5.0
    assert config.parent_ca_bundle is None
    assert config.dynamodb_endpoint_url is None
    assert config.kms_endpoint_url is None
    assert config.audit_retention_days is None


def test_missing_variables_are_named() -> None:
    with pytest.raises(ConfigError) as excinfo:
        ApiConfig.from_env({"TABLE_NAME": "vault", "KEY_ARN": " "})
    assert str(excinfo.value) == "missing environment variables: AWS_REGION, KEY_ARN, VAULT_URL"


def test_optional_settings(tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    config = ApiConfig.from_env(
        {
            **BASE,
            "PARENT_TIMEOUT_SECONDS": "2.5",
            "PARENT_CA_BUNDLE": str(bundle),
            "DYNAMODB_ENDPOINT_URL": "http://127.0.0.1:4566",
            "KMS_ENDPOINT_URL": "http://127.0.0.1:4567/",
            "AUDIT_RETENTION_DAYS": "30",
        }
    )
    assert config.parent_timeout_seconds == 2.5
    assert config.parent_ca_bundle == str(bundle)
    assert config.dynamodb_endpoint_url == "http://127.0.0.1:4566"
    assert config.kms_endpoint_url == "http://127.0.0.1:4567"
    assert config.audit_retention_days == 30


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PARENT_TIMEOUT_SECONDS", "soon", "PARENT_TIMEOUT_SECONDS must be a number"),
        ("PARENT_TIMEOUT_SECONDS", "0", "PARENT_TIMEOUT_SECONDS must be within"),
        ("PARENT_TIMEOUT_SECONDS", "11", "PARENT_TIMEOUT_SECONDS must be within"),
        ("PARENT_TIMEOUT_SECONDS", "nan", "PARENT_TIMEOUT_SECONDS must be within"),
        ("PARENT_CA_BUNDLE", "/nonexistent/ca.pem", "PARENT_CA_BUNDLE must name an existing"),
        ("AUDIT_RETENTION_DAYS", "0", "AUDIT_RETENTION_DAYS must be at least 1"),
        ("AUDIT_RETENTION_DAYS", "1.5", "AUDIT_RETENTION_DAYS must be a whole number"),
        ("VAULT_URL", "vault.example.com", "VAULT_URL must be an http(s) base URL"),
        ("VAULT_URL", "https://vault.example.com/?x=1", "VAULT_URL must be an http(s) base URL"),
        ("KMS_ENDPOINT_URL", "ftp://kms", "KMS_ENDPOINT_URL must be an http(s) base URL"),
    ],
)
def test_invalid_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        ApiConfig.from_env({**BASE, name: value})
    assert str(excinfo.value).startswith(message)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAULT_URL", "secret-host.internal"),
        ("PARENT_CA_BUNDLE", "/secret/ca.pem"),
        ("AUDIT_RETENTION_DAYS", "forever"),
    ],
)
def test_messages_name_the_variable_not_its_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        ApiConfig.from_env({**BASE, name: value})
    assert name in str(excinfo.value)
    assert value not in str(excinfo.value)


def test_empty_optional_values_mean_unset() -> None:
    config = ApiConfig.from_env(
        {**BASE, "PARENT_TIMEOUT_SECONDS": "", "PARENT_CA_BUNDLE": " ", "AUDIT_RETENTION_DAYS": ""}
    )
    assert config.parent_timeout_seconds == 5.0
    assert config.parent_ca_bundle is None
    assert config.audit_retention_days is None
