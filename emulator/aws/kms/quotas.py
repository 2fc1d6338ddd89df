"""KMS's published request quotas for the cryptographic operations, as opt-in throttling.

AWS KMS throttles an account's requests per Region and quota (its developer guide,
"Request quotas", ``requests-per-second``): the cryptographic operations share one
quota per kind of KMS key, and ``GenerateDataKeyPair`` / ``GenerateDataKeyPairWithoutPlaintext``
share one per data key pair spec. Past a quota KMS answers ``ThrottlingException`` with
"You have exceeded the rate at which you may call KMS. Reduce the frequency of your
calls." (its "Throttling AWS KMS requests" page). The defaults, in requests per second:

=====================================================  ===============================================
``Cryptographic operations (symmetric) request rate``  10,000; 20,000 in us-east-2, ap-southeast-1,
                                                       ap-southeast-2, ap-northeast-1, eu-central-1,
                                                       eu-west-2; 100,000 in us-east-1, us-west-2,
                                                       eu-west-1 (Decrypt, Encrypt, GenerateDataKey,
                                                       GenerateDataKeyWithoutPlaintext, GenerateMac,
                                                       GenerateRandom, ReEncrypt, VerifyMac)
``Cryptographic operations (RSA) request rate``        1,000 (Decrypt, Encrypt, ReEncrypt, Sign, Verify)
``Cryptographic operations (ECC and SM2) ...``         1,000 (DeriveSharedSecret, Sign, Verify, ...)
``Cryptographic operations (ML-DSA) request rate``     1,000 (Sign, Verify)
``GenerateDataKeyPair (<spec>) request rate``          100 for each ECC spec; RSA_2048 20,
                                                       RSA_3072 4, RSA_4096 1 (1, 0.5, 0.1 in China)
=====================================================  ===============================================

Each quota is a token bucket holding one second's worth of requests (at least one) and
refilled continuously at its rate: a burst of a second's quota passes, the next request
is throttled, and the bucket refills as time passes. With no Region given the smallest
published tier applies. ``scale`` multiplies every rate (tests use a small one to reach
a quota in a handful of requests; a load test can use it to see where a fraction of
production's capacity saturates); ``overrides`` sets single quotas by name.

Which quota a request counts against follows from the operation and, for an operation on
a key, the key's ``KeySpec``: symmetric and HMAC keys share the symmetric quota, RSA,
ECC/SM2 and ML-DSA keys theirs. A ``Decrypt`` that names no key is symmetric (KMS needs
the ``KeyId`` for an asymmetric ciphertext); ``ReEncrypt`` counts against its source key.
Operations outside these quotas (key management, listing) are not limited here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from emulator.aws.kms.errors import THROTTLING, KmsError

#: The text KMS answers a request past its quota with (``__type``: ``ThrottlingException``).
QUOTA_EXCEEDED_MESSAGE = (
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
)

SYMMETRIC = "Cryptographic operations (symmetric) request rate"
RSA = "Cryptographic operations (RSA) request rate"
ECC = "Cryptographic operations (ECC and SM2) request rate"
ML_DSA = "Cryptographic operations (ML-DSA) request rate"


def data_key_pair_quota(spec: str) -> str:
    """The quota name of ``GenerateDataKeyPair`` for a ``KeyPairSpec``."""
    return f"GenerateDataKeyPair ({spec}) request rate"


_SYMMETRIC_TIERS: tuple[tuple[float, frozenset[str]], ...] = (
    (100_000, frozenset({"us-east-1", "us-west-2", "eu-west-1"})),
    (
        20_000,
        frozenset(
            {"us-east-2", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "eu-central-1", "eu-west-2"}
        ),
    ),
)
_SYMMETRIC_DEFAULT = 10_000.0
_CHINA = frozenset({"cn-north-1", "cn-northwest-1"})
_ASYMMETRIC = 1_000.0
_PAIR_ECC = 100.0
#: RSA data key pairs: (all other Regions, China).
_PAIR_RSA: dict[str, tuple[float, float]] = {
    "RSA_2048": (20.0, 1.0),
    "RSA_3072": (4.0, 0.5),
    "RSA_4096": (1.0, 0.1),
}
_PAIR_ECC_SPECS = (
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
)
_PAIR_SM2 = 25.0

#: The operations the symmetric quota counts (and the asymmetric ones, by key spec).
_KEY_OPERATIONS = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateMac",
        "VerifyMac",
        "ReEncrypt",
        "Sign",
        "Verify",
        "DeriveSharedSecret",
    }
)
_DATA_KEY_PAIR_OPERATIONS = frozenset({"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"})


def published_quotas(region: str | None = None) -> dict[str, float]:
    """KMS's default request quotas (requests per second) for the cryptographic operations.

    ``region=None``: the smallest published tier of each quota that varies by Region.
    """
    symmetric = _SYMMETRIC_DEFAULT
    for rate, regions in _SYMMETRIC_TIERS:
        if region in regions:
            symmetric = rate
    china = region in _CHINA
    quotas = {SYMMETRIC: symmetric, RSA: _ASYMMETRIC, ECC: _ASYMMETRIC, ML_DSA: _ASYMMETRIC}
    for spec in _PAIR_ECC_SPECS:
        quotas[data_key_pair_quota(spec)] = _PAIR_ECC
    for spec, (elsewhere, in_china) in _PAIR_RSA.items():
        # Without a Region, the smaller (China) figure is the smallest published tier.
        quotas[data_key_pair_quota(spec)] = in_china if china or region is None else elsewhere
    quotas[data_key_pair_quota("SM2")] = _PAIR_SM2
    return quotas


def key_spec_quota(spec: str | None) -> str:
    """The shared quota a cryptographic operation on a key of ``spec`` counts against."""
    if spec is None or spec == "SYMMETRIC_DEFAULT" or spec.startswith("HMAC_"):
        return SYMMETRIC
    if spec.startswith("RSA_"):
        return RSA
    if spec.startswith("ML_DSA"):
        return ML_DSA
    # ECC_NIST_*, ECC_SECG_P256K1, SM2.
    return ECC


def quota_for(
    operation: str, payload: Mapping[str, Any], key_spec: Callable[[str], str | None]
) -> str | None:
    """The quota ``operation`` counts against (``None``: none of these quotas).

    ``key_spec`` gives the ``KeySpec`` of a key the request names (``None``: unknown).
    """
    if operation == "GenerateRandom":
        return SYMMETRIC
    if operation == "DeriveSharedSecret":
        # Key agreement exists only on ECC and SM2 keys.
        return ECC
    if operation in _DATA_KEY_PAIR_OPERATIONS:
        spec = payload.get("KeyPairSpec")
        return data_key_pair_quota(spec) if isinstance(spec, str) else None
    if operation not in _KEY_OPERATIONS:
        return None
    member = "SourceKeyId" if operation == "ReEncrypt" else "KeyId"
    key = payload.get(member)
    return key_spec_quota(key_spec(key) if isinstance(key, str) and key else None)


class TokenBucket:
    """``rate`` tokens a second, holding at most ``capacity``; starts full."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("a token bucket needs a positive rate and room for one request")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


@dataclass(frozen=True)
class QuotaSettings:
    """Which published figures apply, and how they are scaled or replaced."""

    region: str | None = None
    scale: float = 1.0
    overrides: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"the quota scale must be positive, not {self.scale}")
        for name, rate in (self.overrides or {}).items():
            if rate <= 0:
                raise ValueError(f"the quota {name!r} must be positive, not {rate}")

    def rates(self) -> dict[str, float]:
        rates = {name: rate * self.scale for name, rate in published_quotas(self.region).items()}
        rates.update(self.overrides or {})
        return rates


class RequestQuotas:
    """One token bucket per quota; :meth:`admit` throttles a request past its quota."""

    def __init__(
        self, settings: QuotaSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or QuotaSettings()
        self.rates = self.settings.rates()
        self._buckets = {name: TokenBucket(rate, max(1.0, rate), clock) for name, rate in self.rates.items()}
        self._lock = threading.Lock()
        #: Requests throttled so far, by quota (read by tests and load reports).
        self.throttled: dict[str, int] = {}

    def admit(
        self, operation: str, payload: Mapping[str, Any], key_spec: Callable[[str], str | None]
    ) -> str | None:
        """Count the request against its quota; past it, raise KMS's ``ThrottlingException``.

        Returns the quota counted (``None``: the request counts against none of these).
        """
        quota = quota_for(operation, payload, key_spec)
        if quota is None or (bucket := self._buckets.get(quota)) is None:
            return None
        with self._lock:
            if bucket.take():
                return quota
            self.throttled[quota] = self.throttled.get(quota, 0) + 1
        raise KmsError.of(THROTTLING, QUOTA_EXCEEDED_MESSAGE)
