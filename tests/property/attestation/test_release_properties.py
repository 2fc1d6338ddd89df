"""Key release decides exactly as the key policy and the encryption context say.

For random vault ids, field sets, measured images, key policies and enclaves, the enclave
gets the vault key (and opens every field) exactly when its attested PCRs satisfy the
policy's PCR conditions and it asks with the vault's own id as encryption context.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_private_key
from hypothesis import event, given, settings
from hypothesis import strategies as st

from emulator.daemon.key_release import KeyReleaseStack
from vault.common import hpke
from vault.common.messages import Credential, EnclaveErrorCode
from vault.common.suites import P384_SHA384_AES256GCM
from vault.common.transport import UnixSocketTransport
from vault.enclave.key_decryptor import KeyDecryptError
from vault.enclave.kms_decryptor import KmsDecryptorConfig, KmsKeyDecryptor
from vault.enclave.nsm import SocketNsm
from vault.infra.key_policy import EnclaveMeasurements, KeyPolicyParams, build_key_policy, pcr3_for_role_arn

from .conftest import ACCOUNT, API_KEY, API_ROLE, INSTANCE_KEY, INSTANCE_ROLE

SUITE = P384_SHA384_AES256GCM
CREDENTIAL = Credential.model_validate({"AccessKeyId": INSTANCE_KEY, "SecretAccessKey": "s", "Token": "t"})
CONFIG = KmsDecryptorConfig(endpoint="http://127.0.0.1:{port}", bridge_port=0, max_attempts=1)
_enclave_ids = itertools.count()

# Never all zeros: the key policy refuses to pin a debug-mode enclave's PCRs.
pcr_values = st.binary(min_size=48, max_size=48).filter(any).map(bytes.hex)
vault_ids = st.from_regex(r"v_[A-Za-z0-9]{1,27}", fullmatch=True)
field_sets = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True), st.text(max_size=40), max_size=5
)


@dataclass(frozen=True)
class Scenario:
    policy: EnclaveMeasurements
    image: EnclaveMeasurements
    role_matches: bool
    debug_mode: bool
    vault_id: str
    asked_vault_id: str
    fields: dict[str, str]

    @property
    def attestation_ok(self) -> bool:
        pinned = ["pcr0", "pcr1", "pcr2"] + (["pcr8"] if self.policy.pcr8 is not None else [])
        same = all(getattr(self.policy, name) == getattr(self.image, name) for name in pinned)
        return same and self.role_matches and not self.debug_mode

    @property
    def context_ok(self) -> bool:
        return self.asked_vault_id == self.vault_id


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    policy = EnclaveMeasurements(
        pcr0=draw(pcr_values), pcr1=draw(pcr_values), pcr2=draw(pcr_values), pcr8=draw(st.none() | pcr_values)
    )
    # Weighted towards the allowed case, which random draws would otherwise rarely reach.
    changed = draw(st.just(set()) | st.sets(st.sampled_from(["pcr0", "pcr1", "pcr2", "pcr8"]), min_size=1))
    image = replace(
        policy,
        **{name: draw(pcr_values.filter(lambda v, n=name: v != getattr(policy, n))) for name in changed},
    )
    vault_id = draw(vault_ids)
    asked = draw(st.sampled_from([vault_id, vault_id, vault_id + "x", vault_id.swapcase()]))
    return Scenario(
        policy=policy,
        image=image,
        role_matches=draw(st.sampled_from([True, True, False])),
        debug_mode=draw(st.sampled_from([False, False, True])),
        vault_id=vault_id,
        asked_vault_id=asked,
        fields=draw(field_sets),
    )


def _client(url: str, access_key: str) -> Any:
    return boto3.session.Session().client(
        "kms",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key="s",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def clients(stack: KeyReleaseStack) -> dict[str, Any]:
    admin = _client(stack.front.upstream.url, ACCOUNT)
    return {
        "key_arn": admin.create_key()["KeyMetadata"]["Arn"],
        "api": _client(stack.front.endpoint_url, API_KEY),
    }


@pytest.fixture(scope="module")
def enclave(
    stack: KeyReleaseStack, rsa_key: rsa.RSAPrivateKey
) -> Iterator[tuple[SocketNsm, KmsKeyDecryptor]]:
    """One decryptor for all examples; each example points its NSM at that example's enclave.

    ``key_max_uses=1`` makes every request attest afresh, so no document outlives its example.
    """
    nsm = SocketNsm("unset")
    config = replace(CONFIG, key_max_uses=1)
    transport = UnixSocketTransport(stack.vsock_dir, 16)
    with KmsKeyDecryptor(nsm, transport, config, key_factory=lambda: rsa_key) as decryptor:
        yield nsm, decryptor


@settings(deadline=None)
@given(scenario=scenarios())
def test_release_happens_exactly_when_policy_and_context_allow(
    scenario: Scenario,
    stack: KeyReleaseStack,
    clients: dict[str, Any],
    enclave: tuple[SocketNsm, KmsKeyDecryptor],
) -> None:
    nsm, decryptor = enclave
    key_arn = clients["key_arn"]
    stack.front.set_key_policy(
        key_arn,
        build_key_policy(
            KeyPolicyParams(
                account_id=ACCOUNT,
                instance_role_arn=INSTANCE_ROLE,
                api_role_arn=API_ROLE,
                measurements=scenario.policy,
            )
        ),
    )
    pair = clients["api"].generate_data_key_pair_without_plaintext(
        KeyId=key_arn, KeyPairSpec="ECC_NIST_P384", EncryptionContext={"vault_id": scenario.vault_id}
    )
    sealed = {
        name: hpke.seal(SUITE, pair["PublicKey"], scenario.vault_id.encode(), name.encode(), value.encode())
        for name, value in scenario.fields.items()
    }
    role = INSTANCE_ROLE if scenario.role_matches else f"arn:aws:iam::{ACCOUNT}:role/another-instance"
    enclave_id = f"prop-{next(_enclave_ids)}"
    nsm.path = stack.nsm.register_enclave(
        enclave_id, scenario.image, pcr3_for_role_arn(role), debug_mode=scenario.debug_mode
    )
    try:
        der = decryptor.decrypt_private_key(
            ciphertext=pair["PrivateKeyCiphertextBlob"],
            vault_id=scenario.asked_vault_id,
            region="us-east-1",
            credential=CREDENTIAL,
        )
        outcome: EnclaveErrorCode | None = None
    except KeyDecryptError as refused:
        outcome = refused.code
    finally:
        stack.nsm.unregister_enclave(enclave_id)
    event(f"outcome: {outcome.value if outcome else 'released'}")

    if scenario.attestation_ok and scenario.context_ok:
        assert outcome is None
        private_key = load_der_private_key(der, None)
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        recipient = hpke.Recipient(SUITE, private_key)
        opened = {
            name: recipient.open(enc, ct, scenario.vault_id.encode(), name.encode()).decode()
            for name, (enc, ct) in sealed.items()
        }
        assert opened == scenario.fields
    elif scenario.context_ok:
        assert outcome == EnclaveErrorCode.ATTESTATION_FAILED
    elif scenario.attestation_ok:
        assert outcome == EnclaveErrorCode.KEY_DECRYPT_FAILED
    else:
        # Both wrong: the front learns the key from the backend's decrypt, which fails first
        # on the context (documented in emulator.aws.kms.front); either refusal is a refusal.
        assert outcome in (EnclaveErrorCode.KEY_DECRYPT_FAILED, EnclaveErrorCode.ATTESTATION_FAILED)
