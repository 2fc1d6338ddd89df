"""KMS's request quotas as opt-in throttling: the published figures, the buckets, the front's answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulator.aws.kms.errors import KmsError
from emulator.aws.kms.quotas import (
    ECC,
    ML_DSA,
    QUOTA_EXCEEDED_MESSAGE,
    RSA,
    SYMMETRIC,
    QuotaSettings,
    RequestQuotas,
    TokenBucket,
    data_key_pair_quota,
    key_spec_quota,
    published_quotas,
    quota_for,
)

from .conftest import API_KEY, API_ROLE, Harness, kms_client


class FakeClock:
    """A monotonic clock the test moves by hand: refills happen exactly when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def no_key(_: str) -> str | None:
    return None


# -- the published figures -------------------------------------------------------------------


def test_symmetric_quota_follows_the_regions_tier() -> None:
    assert published_quotas()[SYMMETRIC] == 10_000  # no Region: the smallest tier
    assert published_quotas("ca-central-1")[SYMMETRIC] == 10_000
    for region in (
        "us-east-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-northeast-1",
        "eu-central-1",
        "eu-west-2",
    ):
        assert published_quotas(region)[SYMMETRIC] == 20_000
    for region in ("us-east-1", "us-west-2", "eu-west-1"):
        assert published_quotas(region)[SYMMETRIC] == 100_000


def test_asymmetric_and_data_key_pair_quotas() -> None:
    quotas = published_quotas("us-east-1")
    assert quotas[RSA] == quotas[ECC] == quotas[ML_DSA] == 1_000
    assert quotas[data_key_pair_quota("ECC_NIST_P384")] == 100
    assert [quotas[data_key_pair_quota(s)] for s in ("RSA_2048", "RSA_3072", "RSA_4096")] == [20, 4, 1]
    china = published_quotas("cn-north-1")
    assert [china[data_key_pair_quota(s)] for s in ("RSA_2048", "RSA_3072", "RSA_4096")] == [1, 0.5, 0.1]
    # Without a Region the smallest published tier applies to the RSA pairs as well.
    assert published_quotas()[data_key_pair_quota("RSA_4096")] == 0.1


def test_which_quota_a_request_counts_against() -> None:
    specs = {"sym": "SYMMETRIC_DEFAULT", "hmac": "HMAC_256", "rsa": "RSA_2048", "ecc": "ECC_NIST_P256"}
    spec = specs.get
    assert quota_for("Decrypt", {"CiphertextBlob": "x"}, spec) == SYMMETRIC  # no KeyId: symmetric
    assert quota_for("Decrypt", {"KeyId": "rsa"}, spec) == RSA
    assert quota_for("GenerateMac", {"KeyId": "hmac"}, spec) == SYMMETRIC
    assert quota_for("Sign", {"KeyId": "ecc"}, spec) == ECC
    assert quota_for("ReEncrypt", {"SourceKeyId": "rsa", "DestinationKeyId": "sym"}, spec) == RSA
    assert quota_for("GenerateRandom", {}, spec) == SYMMETRIC
    assert quota_for("DeriveSharedSecret", {"KeyId": "ecc"}, spec) == ECC
    assert quota_for("GenerateDataKeyPairWithoutPlaintext", {"KeyPairSpec": "RSA_4096"}, spec) == (
        data_key_pair_quota("RSA_4096")
    )
    # Key management and listing are outside the cryptographic quotas.
    assert quota_for("DescribeKey", {"KeyId": "sym"}, spec) is None
    assert quota_for("ListKeys", {}, spec) is None
    assert key_spec_quota("ML_DSA_65") == ML_DSA and key_spec_quota("SM2") == ECC


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="scale"):
        QuotaSettings(scale=0)
    with pytest.raises(ValueError, match="positive"):
        QuotaSettings(overrides={SYMMETRIC: -1})
    settings = QuotaSettings(region="us-east-1", scale=0.001, overrides={RSA: 2})
    assert settings.rates()[SYMMETRIC] == pytest.approx(100)
    assert settings.rates()[RSA] == 2


# -- the buckets -----------------------------------------------------------------------------


def test_bucket_passes_a_seconds_worth_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5, capacity=5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.2)  # one request's worth
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.advance(60)  # never more than the capacity
    assert sum(bucket.take() for _ in range(10)) == 5


def test_admit_throttles_with_kms_error_and_counts_per_quota() -> None:
    clock = FakeClock()
    quotas = RequestQuotas(QuotaSettings(overrides={SYMMETRIC: 2, RSA: 1}), clock=clock)
    spec = {"rsa": "RSA_2048"}.get
    assert quotas.admit("Encrypt", {"KeyId": "sym"}, spec) == SYMMETRIC
    assert quotas.admit("Decrypt", {}, spec) == SYMMETRIC
    with pytest.raises(KmsError) as throttled:
        quotas.admit("GenerateDataKey", {"KeyId": "sym"}, spec)
    assert throttled.value.error_type == "ThrottlingException" and throttled.value.status == 400
    assert json.loads(throttled.value.body()) == {
        "__type": "ThrottlingException",
        "message": QUOTA_EXCEEDED_MESSAGE,
    }
    # The RSA quota is counted independently of the symmetric one.
    assert quotas.admit("Encrypt", {"KeyId": "rsa"}, spec) == RSA
    with pytest.raises(KmsError):
        quotas.admit("Sign", {"KeyId": "rsa"}, spec)
    assert quotas.throttled == {SYMMETRIC: 1, RSA: 1}
    assert quotas.admit("ListKeys", {}, spec) is None  # not limited here
    clock.advance(0.5)
    assert quotas.admit("Encrypt", {"KeyId": "sym"}, spec) == SYMMETRIC


# -- the front -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


#: The API role may do anything with the test's own keys: only the quotas hold it back.
OPEN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": API_ROLE}, "Action": "kms:*", "Resource": "*"}],
}


@pytest.fixture
def keys(moto_url: str, harness: Harness) -> dict[str, str]:
    admin = kms_client(moto_url)
    keys = {
        "symmetric": admin.create_key()["KeyMetadata"]["Arn"],
        "rsa": admin.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"],
    }
    for arn in keys.values():
        harness.stack.front.set_key_policy(arn, OPEN_POLICY)
    return keys


@pytest.fixture
def limited(harness: Harness, clock: FakeClock) -> Iterator[RequestQuotas]:
    quotas = RequestQuotas(QuotaSettings(overrides={SYMMETRIC: 3, RSA: 2}), clock=clock)
    harness.stack.front.quotas = quotas
    yield quotas
    harness.stack.front.quotas = None


def api(harness: Harness) -> Any:
    # One attempt: botocore would otherwise retry a ThrottlingException on its own.
    return kms_client(harness.front_url, API_KEY, "api-secret", attempts=1)


def throttle_error(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as throttled:
        call(**kwargs)
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return dict(throttled.value.response["Error"])


def test_off_by_default_a_burst_beyond_any_small_quota_passes(harness: Harness, keys: dict[str, str]) -> None:
    assert harness.stack.front.quotas is None
    client = api(harness)
    for _ in range(25):
        client.encrypt(KeyId=keys["symmetric"], Plaintext=b"x")
    for _ in range(5):
        client.generate_random(NumberOfBytes=8)


def test_a_burst_over_the_symmetric_quota_is_throttled_then_recovers(
    harness: Harness, keys: dict[str, str], limited: RequestQuotas, clock: FakeClock
) -> None:
    client = api(harness)
    blob = client.encrypt(KeyId=keys["symmetric"], Plaintext=b"secret")["CiphertextBlob"]
    client.generate_random(NumberOfBytes=8)  # the same shared quota
    client.decrypt(CiphertextBlob=blob)
    error = throttle_error(client.encrypt, KeyId=keys["symmetric"], Plaintext=b"x")
    assert error == {"Code": "ThrottlingException", "Message": QUOTA_EXCEEDED_MESSAGE}
    # The asymmetric quota is its own: the RSA key still has two requests this second.
    client.encrypt(KeyId=keys["rsa"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    client.encrypt(KeyId=keys["rsa"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    throttle_error(
        client.encrypt, KeyId=keys["rsa"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256"
    )
    # Management operations are not held back by the cryptographic quotas.
    client.describe_key(KeyId=keys["symmetric"])
    assert limited.throttled == {SYMMETRIC: 1, RSA: 1}
    clock.advance(1.0)  # a second later both buckets are full again
    assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    client.encrypt(KeyId=keys["rsa"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")


def test_rsa_data_key_pairs_at_the_published_rate(
    harness: Harness, keys: dict[str, str], clock: FakeClock
) -> None:
    # No Region: the smallest tier, one RSA_2048 pair a second (China's figure; elsewhere 20).
    harness.stack.front.quotas = RequestQuotas(clock=clock)
    try:
        client = api(harness)
        request = {
            "KeyId": keys["symmetric"],
            "KeyPairSpec": "RSA_2048",
            "EncryptionContext": {"vault_id": "v_q"},
        }
        client.generate_data_key_pair_without_plaintext(**request)
        error = throttle_error(client.generate_data_key_pair_without_plaintext, **request)
        assert error["Code"] == "ThrottlingException"
        # ECC pairs have a quota of their own (100 a second).
        client.generate_data_key_pair_without_plaintext(**{**request, "KeyPairSpec": "ECC_NIST_P384"})
        clock.advance(0.5)
        throttle_error(client.generate_data_key_pair_without_plaintext, **request)
        clock.advance(0.5)
        client.generate_data_key_pair_without_plaintext(**request)
    finally:
        harness.stack.front.quotas = None
