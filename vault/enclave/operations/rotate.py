"""``rotate``: re-seal every opened field of a vault under a new public key.

The parameters (:mod:`vault.common.rotation`) name the new public key, its suite and
the API's one-request reply key; the authorization signs all three, so a parent that
swaps in a public key of its own is refused before the vault key is asked for. Either
every field is re-sealed or none is: a field that did not open fails the whole request
(``InvalidCiphertext``), because storing a new key beside a field only the old key
opens would lose that field. The answer holds ciphertexts and a proof, never plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from vault.common import hpke, rotation
from vault.common.messages import DecryptRequest, EnclaveErrorCode, EnclaveReply
from vault.common.sealing import seal_field
from vault.common.suites import Suite, SuiteError, suite_from_b64
from vault.enclave.keys import KeyFormatError, load_private_key
from vault.enclave.operations.base import OpenedFields, OperationRefused

#: How many per-field errors a refused rotation quotes.
_QUOTED_ERRORS = 3


@dataclass(frozen=True)
class RotationTarget:
    """What the fields are sealed to, and the key the proof is made for."""

    suite: Suite
    public_key: ec.EllipticCurvePublicKey
    reply_key: ec.EllipticCurvePublicKey


def target_of(request: DecryptRequest) -> RotationTarget:
    """The request's parameters, parsed; :class:`OperationRefused` names the first unusable one."""
    parameters = request.parameters or {}
    missing = sorted(rotation.PARAMETERS - set(parameters))
    if missing:
        raise OperationRefused(f"rotate needs the parameters {', '.join(missing)}")
    unknown = sorted(set(parameters) - rotation.PARAMETERS)
    if unknown:
        raise OperationRefused(f"rotate takes no parameter {unknown[0][:64]}")
    try:
        suite = suite_from_b64(parameters[rotation.NEW_SUITE_ID])
        current = suite_from_b64(request.suite_id)
    except SuiteError as exc:
        raise OperationRefused(f"{rotation.NEW_SUITE_ID}: {exc}") from None
    try:
        public_key = hpke.load_public_key(
            suite, rotation.decode(parameters[rotation.NEW_PUBLIC_KEY], rotation.NEW_PUBLIC_KEY)
        )
        reply_key = rotation.load_reply_key(current, parameters[rotation.REPLY_KEY])
    except rotation.RotationError as exc:
        raise OperationRefused(str(exc)) from None
    except hpke.HpkeError:
        raise OperationRefused(f"{rotation.NEW_PUBLIC_KEY} is not a public key for {suite}") from None
    return RotationTarget(suite, public_key, reply_key)


class RotateOperation:
    """The registered ``rotate`` operation (see :mod:`vault.enclave.operations`)."""

    def check(self, request: DecryptRequest) -> None:
        target_of(request)

    def finish(self, opened: OpenedFields) -> EnclaveReply:
        request = opened.request
        failed = [name for name, value in opened.values.items() if value is None]
        if failed or opened.errors:
            quoted = "; ".join(opened.errors[:_QUOTED_ERRORS])
            return EnclaveReply.failure(
                EnclaveErrorCode.INVALID_CIPHERTEXT,
                f"rotation refused: {len(failed)} of {len(opened.values)} fields could not be opened"
                + (f": {quoted}" if quoted else ""),
            )
        target = target_of(request)
        current = opened.recipient.suite
        try:
            vault_key = load_private_key(opened.private_key, current)
        except KeyFormatError as exc:
            return EnclaveReply.failure(EnclaveErrorCode.KEY_DECRYPT_FAILED, str(exc))
        sealed = {
            name: rotation.encode(
                seal_field(target.suite, target.public_key, request.vault_id, name, value.encode("utf-8"))
            )
            for name, value in opened.values.items()
            if value is not None
        }
        secret = rotation.enclave_secret(vault_key, target.reply_key)
        del vault_key
        parameters = request.parameters or {}
        sealed[rotation.PROOF_KEY] = rotation.proof(
            secret, request.vault_id, parameters[rotation.NEW_PUBLIC_KEY], sealed
        )
        return EnclaveReply(fields=sealed, errors=[])
