"""ECDH with the private key of a moto KMS key, for the front's ``DeriveSharedSecret``.

moto creates ``KEY_AGREEMENT`` keys (``CreateKey`` with an ECC ``KeySpec``) and answers
``GetPublicKey`` for them, but has no ``DeriveSharedSecret``. When moto serves in this
process (the emulator's moto backend, moto's ``ThreadedMotoServer``), its keys are
objects in moto's backend registry: :class:`MotoKeyAgreement` reads the key's private key
there and derives the secret with it, so the secret is the one AWS would derive with
that key pair. Nothing else of moto's state is read or changed.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from moto.kms.models import kms_backends

from emulator.aws.kms.errors import INVALID_KEY_USAGE, KEY_NOT_FOUND, KmsError

__all__ = ["MotoKeyAgreement"]


def _arn_parts(key_arn: str) -> tuple[str, str, str]:
    """``(account, region, key id)`` of ``arn:aws:kms:<region>:<account>:key/<id>``."""
    parts = key_arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("key/"):
        raise KmsError.of(KEY_NOT_FOUND, key_arn=key_arn)
    return parts[4], parts[3], parts[5].removeprefix("key/")


class MotoKeyAgreement:
    """A :data:`emulator.aws.kms.front.KeyAgreement` over the keys of the moto in this process."""

    def __call__(self, key_arn: str, peer_public_key: bytes) -> bytes:
        account, region, key_id = _arn_parts(key_arn)
        key = kms_backends[account][region].keys.get(key_id)
        if key is None:
            raise KmsError.of(KEY_NOT_FOUND, key_arn=key_arn)
        # moto wraps the cryptography key of an ECC KMS key in its own class, as ``private_key``.
        private = getattr(key.private_key, "private_key", None)
        if key.key_usage != "KEY_AGREEMENT" or not isinstance(private, ec.EllipticCurvePrivateKey):
            raise KmsError.of(INVALID_KEY_USAGE, f"{key_arn} is not an ECC key agreement key")
        peer = load_der_public_key(peer_public_key)
        if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != private.curve.name:
            raise KmsError.of(INVALID_KEY_USAGE, f"the public key is not on the curve of {key_arn}")
        return private.exchange(ec.ECDH(), peer)
