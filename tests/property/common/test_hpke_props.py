"""HPKE interoperability with an independent implementation (pyhpke), and binding.

Seal with pyhpke and open with the project's HPKE, and the other way round, for
arbitrary vault ids (HPKE info), field names (aad) and Unicode values, in every vault
suite. A ciphertext never opens under another vault id or another field name.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from vault.common import hpke
from vault.common.suites import VAULT_SUITES, Suite

# One key pair per suite for the whole module: key generation is not under test, and
# P-521 generation per example would dominate the run time.
KEYS = {suite: ec.generate_private_key(suite.kem_params.curve()) for suite in VAULT_SUITES}
RECIPIENTS = {suite: hpke.Recipient(suite, key) for suite, key in KEYS.items()}


def _pyhpke_suite(suite: Suite) -> CipherSuite:
    return CipherSuite.new(KEMId(int(suite.kem)), KDFId(int(suite.kdf)), AEADId(int(suite.aead)))


suites = st.sampled_from(VAULT_SUITES)
vault_ids = st.text(min_size=1, max_size=64)
field_names = st.text(min_size=1, max_size=32)
values = st.text(max_size=200)


@given(suite=suites, vault_id=vault_ids, name=field_names, value=values)
def test_pyhpke_seal_then_project_open(suite, vault_id, name, value):
    other = _pyhpke_suite(suite)
    public = KEMKey.from_pyca_cryptography_key(KEYS[suite].public_key())
    enc, sender = other.create_sender_context(public, info=vault_id.encode())
    ct = sender.seal(value.encode(), aad=name.lower().encode())
    opened = RECIPIENTS[suite].open(enc, ct, vault_id.encode(), name.lower().encode())
    assert opened.decode() == value


@given(suite=suites, vault_id=vault_ids, name=field_names, value=values)
def test_project_seal_then_pyhpke_open(suite, vault_id, name, value):
    enc, ct = hpke.seal(
        suite, KEYS[suite].public_key(), vault_id.encode(), name.lower().encode(), value.encode()
    )
    other = _pyhpke_suite(suite)
    private = KEMKey.from_pyca_cryptography_key(KEYS[suite])
    receiver = other.create_recipient_context(enc, private, info=vault_id.encode())
    assert receiver.open(ct, aad=name.lower().encode()).decode() == value


@given(suite=suites, vault_id=vault_ids, other_id=vault_ids, name=field_names, value=values)
def test_never_opens_under_another_vault_id(suite, vault_id, other_id, name, value):
    enc, ct = hpke.seal(suite, KEYS[suite].public_key(), vault_id.encode(), name.encode(), value.encode())
    if other_id == vault_id:
        assert RECIPIENTS[suite].open(enc, ct, other_id.encode(), name.encode()) == value.encode()
        return
    try:
        RECIPIENTS[suite].open(enc, ct, other_id.encode(), name.encode())
    except hpke.HpkeError as exc:
        assert str(exc) == "authentication failed"
    else:
        raise AssertionError("opened under another vault id")


@given(suite=suites, vault_id=vault_ids, name=field_names, other_name=field_names, value=values)
def test_never_opens_under_another_field_name(suite, vault_id, name, other_name, value):
    aad, other_aad = name.lower().encode(), other_name.lower().encode()
    enc, ct = hpke.seal(suite, KEYS[suite].public_key(), vault_id.encode(), aad, value.encode())
    if other_aad == aad:
        return
    try:
        RECIPIENTS[suite].open(enc, ct, vault_id.encode(), other_aad)
    except hpke.HpkeError:
        return
    raise AssertionError("opened under another field name")
