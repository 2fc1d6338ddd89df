"""What the API decides and checks when it rotates a vault's key (``POST /vaults/{id}/rotate``).

Pure functions: which suites a vault can be rotated to, the enclave request's
parameters, and the check of the enclave's answer before anything is stored. The
service (:meth:`vault.api.service.VaultService.rotate`) does the I/O.

The new key pair comes from the same KMS call as a new vault's, whose key policy pins
the key pair spec (``kms:DataKeyPairSpec``), so the suites on offer are those on that
spec's curve.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from vault.common import rotation
from vault.common.hpke import HpkeError, load_public_key
from vault.common.rotation import RotationError
from vault.common.suites import VAULT_SUITES, Suite
from vault.infra.key_policy import KEY_PAIR_SPEC

#: KMS key pair specs and the curve of the keys they make.
_SPEC_CURVES: dict[str, str] = {
    "ECC_NIST_P256": ec.SECP256R1.name,
    "ECC_NIST_P384": ec.SECP384R1.name,
    "ECC_NIST_P521": ec.SECP521R1.name,
}
#: Suites a vault can be rotated to: the vault suites on the key pair spec's curve.
ROTATION_SUITES: tuple[Suite, ...] = tuple(
    suite for suite in VAULT_SUITES if suite.kem_params.curve().name == _SPEC_CURVES[KEY_PAIR_SPEC]
)
ROTATION_SUITE_NAMES: tuple[str, ...] = tuple(suite.name for suite in ROTATION_SUITES)
#: AEAD tag length of every vault suite: a re-sealed value is at least ``Nenc`` + this long.
_TAG_LENGTH = 16


def target_suite(name: str | None, current: Suite | None) -> Suite:
    """The suite asked for by name; else the vault's own if it can be kept; else the first on offer."""
    if name is not None:
        for suite in ROTATION_SUITES:
            if suite.name == name:
                return suite
        raise ValueError("not a suite a vault can be rotated to")
    if current is not None and current in ROTATION_SUITES:
        return current
    return ROTATION_SUITES[0]


def parameters(new_public_key: bytes, suite: Suite, reply_key: str) -> dict[str, str]:
    """The rotate operation's parameters (the authorization signs them exactly)."""
    return {
        rotation.NEW_PUBLIC_KEY: base64.b64encode(new_public_key).decode("ascii"),
        rotation.NEW_SUITE_ID: suite.suite_id_b64,
        rotation.REPLY_KEY: reply_key,
    }


def vault_public_key(suite: Suite, public_key: bytes) -> ec.EllipticCurvePublicKey:
    """The vault's current public key, for the proof's ECDH; ``ValueError`` if it does not load."""
    try:
        return load_public_key(suite, public_key)
    except HpkeError as exc:
        raise ValueError("the vault's public key does not load for its suite") from exc


def check_reply(
    fields: Mapping[str, Any] | None,
    *,
    sent: Collection[str],
    suite: Suite,
    secret: bytes,
    vault_id: str,
    new_public_key: str,
) -> dict[str, bytes]:
    """The re-sealed fields (name -> ``enc || ct``), if the answer is complete and its proof holds.

    Complete: exactly the names sent, each a base64 value long enough for ``suite``, and
    the proof of :mod:`vault.common.rotation` over all of them. Anything else is a
    :class:`RotationError` and nothing may be stored.
    """
    answer = dict(fields or {})
    received = answer.pop(rotation.PROOF_KEY, None)
    if not isinstance(received, str):
        raise RotationError("the answer carries no proof")
    if set(answer) != set(sent):
        raise RotationError("the answer does not hold exactly the fields sent")
    texts: dict[str, str] = {}
    for name, value in answer.items():
        if not isinstance(value, str):
            raise RotationError("a re-sealed field is not a string")
        texts[name] = value
    if not rotation.verify_proof(secret, vault_id, new_public_key, texts, received):
        raise RotationError("the answer's proof does not verify")
    sealed: dict[str, bytes] = {}
    for name, text in texts.items():
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise RotationError("a re-sealed field is not base64") from None
        if len(raw) < suite.n_enc + _TAG_LENGTH:
            raise RotationError("a re-sealed field is too short for its suite")
        sealed[name] = raw
    return sealed
