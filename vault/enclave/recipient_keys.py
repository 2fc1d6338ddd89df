"""The enclave's ephemeral RSA recipient keys and the attestation documents that bind them.

KMS encrypts an attested ``Decrypt`` result to the RSA public key inside the enclave's
attestation document. Whoever lacks the matching private key learns nothing from the
response, and that private key is generated here and never leaves this process.

Per request or reused? Measured on the project's 2-core machine: generating an RSA-2048
key costs ~40 ms at the median with a long tail (p10 18 ms, p90 100 ms; medians of
80-150 ms when the machine is busy); an emulated attestation document 0.4-0.8 ms;
opening the CMS answer ~0.4 ms; a whole key release through bridge, vsock-proxy,
attestation front and moto 6-9 ms with a reused key against 56 ms with a fresh key per
request (140 ms on a busy machine). Key generation would dominate every request and make
its latency erratic, for no gain against an attacker outside the enclave:

* a copied document is useless without the private key: KMS answers it only with
  ciphertext for that key;
* in production the KMS answer travels inside TLS that ends in the enclave, so the
  parent cannot collect answers for the key, let alone feed it chosen ones; the CMS
  opener also reports every failure with one text, so it is no oracle either.

So a key and its document are reused, within bounds: at most ``max_age`` seconds
(default 60, well inside the 5-minute document freshness the emulated KMS allows) and at
most ``max_uses`` requests (default 100). Both bounds limit how much a later
compromise of the process could read from recorded traffic. ``max_uses=1`` restores
per-request keys. A key whose document was refused is dropped at once, so the next
request attests afresh. Dropped keys are released to OpenSSL, which clears private
key memory when it frees it.

The next key is made ahead, in the background, once the current one has used
``RENEW_AHEAD`` of either bound, and takes over when the current one reaches it; so
no request waits for key generation (OpenSSL releases the GIL while it generates).
The successor is subject to the same bounds, counted from when it was made; one that
expired unused is dropped. Per-request keys (``max_uses=1``) are made on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault.enclave.nsm import Nsm

RSA_KEY_SIZE = 2048
DEFAULT_MAX_AGE = 60.0
DEFAULT_MAX_USES = 100
#: Share of either bound after which the successor key is made.
RENEW_AHEAD = 0.8
Job = Callable[[], None]


@dataclass(eq=False)
class RecipientKey:
    """One RSA key pair and its attestation document (``public_key`` = DER SPKI)."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    document: bytes = field(repr=False)
    created: float
    uses: int = 0


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)


def in_background(job: Job) -> None:
    threading.Thread(target=job, name="recipient-key-renewal", daemon=True).start()


class RecipientKeys:
    """Hands out the current recipient key, replacing it when its bounds are reached.

    ``key_factory`` makes the RSA keys (a fresh RSA-2048 key each time by default);
    ``renew`` runs the job that makes the successor key (a thread by default; ``None``:
    keys are only made on demand).
    """

    def __init__(
        self,
        nsm: Nsm,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        max_uses: int = DEFAULT_MAX_USES,
        clock: Callable[[], float] = time.monotonic,
        key_factory: Callable[[], rsa.RSAPrivateKey] = generate_key,
        renew: Callable[[Job], None] | None = in_background,
    ) -> None:
        if max_age <= 0 or max_uses < 1:
            raise ValueError("recipient keys need max_age > 0 and max_uses >= 1")
        self._nsm = nsm
        self.max_age = max_age
        self.max_uses = max_uses
        self._clock = clock
        self._key_factory = key_factory
        self._renew = renew if max_uses > 1 else None
        self._current: RecipientKey | None = None
        self._successor: RecipientKey | None = None
        self._renewing = False
        #: Bumped by discard/clear, so a successor made before then is not used.
        self._generation = 0
        self._lock = threading.Lock()

    def _fresh(self) -> RecipientKey:
        private_key = self._key_factory()
        spki = private_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        document = self._nsm.attestation(public_key=spki)
        return RecipientKey(private_key=private_key, document=document, created=self._clock())

    def _spent(self, key: RecipientKey, now: float, share: float = 1.0) -> bool:
        return key.uses >= share * self.max_uses or now - key.created >= share * self.max_age

    def _successor_due(self, current: RecipientKey, now: float) -> bool:
        """Whether to start making the next key (called with the lock held)."""
        return self._successor is None and not self._renewing and self._spent(current, now, RENEW_AHEAD)

    def acquire(self) -> RecipientKey:
        """The key to use for one request (counted as one use). Raises ``NsmError``."""
        with self._lock:
            now = self._clock()
            current = self._current
            if current is None or self._spent(current, now):
                successor, self._successor = self._successor, None
                if successor is None or self._spent(successor, now):
                    successor = self._fresh()
                self._current = current = successor
            current.uses += 1
            renew = self._renew if self._successor_due(current, now) else None
            if renew is not None:
                self._renewing = True
            generation = self._generation
        if renew is not None:
            renew(lambda: self._make_successor(generation))
        return current

    def _make_successor(self, generation: int) -> None:
        try:
            successor: RecipientKey | None = self._fresh()
        except Exception:  # noqa: BLE001 - the next rotation makes its key on demand and reports the error
            successor = None
        with self._lock:
            self._renewing = False
            if generation == self._generation:
                self._successor = successor

    def prepare(self) -> None:
        """Make the first key ahead of demand, without counting a use. Raises ``NsmError``."""
        with self._lock:
            if self._current is None:
                self._current = self._fresh()

    def discard(self, key: RecipientKey) -> None:
        """Stop handing out ``key`` (its document was refused or its answer was unusable)."""
        with self._lock:
            if self._current is key:
                self._current = None
                # Attested by the same enclave before the refusal: attest afresh instead.
                self._successor = None
                self._generation += 1

    def clear(self) -> None:
        with self._lock:
            self._current = None
            self._successor = None
            self._generation += 1
