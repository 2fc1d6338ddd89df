"""Test credentials of one emulator run: the instance role's, the API role's, SigV4 test principals."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from emulator.daemon.config import EmulatorConfig


@dataclass(frozen=True)
class AwsKey:
    """A session credential (random, valid only inside this emulator run)."""

    access_key_id: str
    secret_access_key: str
    token: str

    def as_imds(self) -> dict[str, str]:
        """The fields IMDS serves."""
        return {
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.token,
        }


@dataclass(frozen=True)
class TestPrincipal:
    """An IAM user whose SigV4 signatures the gateway accepts (decision D15)."""

    __test__ = False  # not a pytest test class

    access_key_id: str
    secret_access_key: str
    arn: str

    def to_json(self) -> dict[str, str]:
        return {
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "arn": self.arn,
        }


@dataclass(frozen=True)
class Credentials:
    instance: AwsKey
    api: AwsKey
    principals: tuple[TestPrincipal, ...]


#: Roles the gateway's test principals act as (``sigv4_principals`` in the state's facts).
TEST_ROLES = ("vault-support", "vault-analytics")
TEST_SESSION_NAME = "vault-e2e"


def _random_id(prefix: str) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def _random_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


def make_credentials(config: EmulatorConfig) -> Credentials:
    """Fresh credentials for the simulated instance role and API role, and one SigV4 test principal."""
    instance = AwsKey(_random_id("ASIA"), _random_secret(), secrets.token_urlsafe(64))
    # LocalStack files resources under the account named by a 12-digit access key id (any
    # other id means its default account): the API's key id is therefore the account id,
    # so its DynamoDB calls reach the provisioned table on every backend. The secret stays
    # random, and the KMS front still verifies the API's signatures with it.
    api = AwsKey(config.account_id, _random_secret(), secrets.token_urlsafe(64))
    tester = TestPrincipal(
        _random_id("AKIA"), _random_secret(), f"arn:aws:iam::{config.account_id}:user/vault-tester"
    )
    # Two role sessions, as API Gateway reports an assumed role's caller, so that tests can
    # act as two roles under a reveal policy (the IAM user stays the default principal).
    roles = tuple(
        TestPrincipal(
            _random_id("AKIA"),
            _random_secret(),
            f"arn:aws:sts::{config.account_id}:assumed-role/{role}/{TEST_SESSION_NAME}",
        )
        for role in TEST_ROLES
    )
    return Credentials(instance=instance, api=api, principals=(tester, *roles))
