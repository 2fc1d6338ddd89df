"""Fixtures for the key-release path: test PKIs, an RSA key, moto, and the emulated stack."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer

from emulator.aws.kms.front import Identity
from emulator.daemon.key_release import KeyReleaseStack
from emulator.nitro.pki import TestPki
from vault.common.messages import Credential
from vault.infra.key_policy import (
    EnclaveMeasurements,
    KeyPolicyParams,
    build_key_policy,
    pcr3_for_role_arn,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
INSTANCE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/nitro-vault-instance"
API_ROLE = f"arn:aws:iam::{ACCOUNT}:role/nitro-vault-api"
INSTANCE_KEY = "ASIAINSTANCE00000001"
API_KEY = "ASIAAPIROLE000000001"
INSTANCE_CREDENTIAL = Credential.model_validate(
    {"AccessKeyId": INSTANCE_KEY, "SecretAccessKey": "instance-secret", "Token": "instance-token"}
)
MEASUREMENTS = EnclaveMeasurements(pcr0="a0" * 48, pcr1="b1" * 48, pcr2="c2" * 48, pcr8="d8" * 48)
PCR3 = pcr3_for_role_arn(INSTANCE_ROLE)
# One boto3 session: it caches service models, so clients are cheap to create from it.
_SESSION = boto3.session.Session()


def key_policy(
    measurements: EnclaveMeasurements | None = MEASUREMENTS, *following: EnclaveMeasurements, **options: Any
) -> dict[str, Any]:
    """The vault key policy for the test roles; ``following`` are further images allowed to decrypt."""
    return build_key_policy(
        KeyPolicyParams(
            account_id=ACCOUNT,
            instance_role_arn=INSTANCE_ROLE,
            api_role_arn=API_ROLE,
            measurements=measurements,
            additional_measurements=following,
            **options,
        )
    )


@pytest.fixture(scope="session")
def pki() -> TestPki:
    return TestPki.create()


@pytest.fixture(scope="session")
def other_pki() -> TestPki:
    return TestPki.create("someone-else")


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def kms_client(url: str, access_key: str = "admin", secret: str = "admin-secret", attempts: int = 3) -> Any:
    return _SESSION.client(
        "kms",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


@pytest.fixture(scope="session")
def key_arn(moto_url: str) -> str:
    return str(kms_client(moto_url).create_key(Description="vault root key")["KeyMetadata"]["Arn"])


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must fit in sun_path (108 bytes); pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="kr-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Harness:
    stack: KeyReleaseStack
    key_arn: str
    directory: Path

    @property
    def front_url(self) -> str:
        return self.stack.front.endpoint_url

    def api_client(self) -> Any:
        return kms_client(self.front_url, API_KEY, "api-secret")

    def instance_client(self) -> Any:
        return kms_client(self.front_url, INSTANCE_KEY, "instance-secret")

    def new_vault_key(self, vault_id: str) -> dict[str, Any]:
        response: dict[str, Any] = self.api_client().generate_data_key_pair_without_plaintext(
            KeyId=self.key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": vault_id}
        )
        return response

    def register(self, name: str = "enc", **kwargs: Any) -> Path:
        kwargs.setdefault("measurements", MEASUREMENTS)
        kwargs.setdefault("pcr3", PCR3)
        return self.stack.nsm.register_enclave(name, **kwargs)

    def enclave_env(self, nsm_socket: Path) -> dict[str, str]:
        return self.stack.enclave_env(nsm_socket)


@pytest.fixture
def harness(moto_url: str, key_arn: str, pki: TestPki, short_dir: Path) -> Iterator[Harness]:
    stack = KeyReleaseStack.start(
        backend=moto_url,
        runtime_dir=short_dir,
        pki=pki,
        identities={INSTANCE_KEY: INSTANCE_ROLE, API_KEY: Identity(API_ROLE)},
        key_policies={key_arn: key_policy()},
    )
    with stack:
        yield Harness(stack=stack, key_arn=key_arn, directory=short_dir)
