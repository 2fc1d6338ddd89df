"""Properties of the formats on the key-release path: CMS, BER, COSE, image measurement."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from emulator.aws.kms.cms import envelope
from emulator.nitro.cose import CoseError, sign1, verify_sign1
from emulator.nitro.measure import measure_image
from vault.enclave import ber
from vault.enclave.cms import CmsError, open_enveloped_data


@pytest.fixture(scope="module")
def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@given(content=st.binary(max_size=5000), ber_encoding=st.booleans())
def test_cms_round_trip(content: bytes, ber_encoding: bool, rsa_key: rsa.RSAPrivateKey) -> None:
    assert open_enveloped_data(envelope(content, rsa_key.public_key(), ber=ber_encoding), rsa_key) == content


@given(content=st.binary(min_size=1, max_size=300), data=st.data())
def test_corrupted_cms_fails_only_with_cms_error(
    content: bytes, data: st.DataObject, rsa_key: rsa.RSAPrivateKey
) -> None:
    message = bytearray(envelope(content, rsa_key.public_key(), ber=data.draw(st.booleans())))
    position = data.draw(st.integers(0, len(message) - 1))
    message[position] ^= data.draw(st.integers(1, 255))
    try:
        open_enveloped_data(bytes(message), rsa_key)
    except CmsError:
        pass  # CBC has no integrity of its own: some flips open to other bytes; nothing else may escape


@given(data=st.binary(max_size=200))
def test_ber_reader_never_fails_otherwise(data: bytes) -> None:
    try:
        ber.decode(data)
    except ber.BerError:
        pass


@given(payload=st.binary(max_size=2000), data=st.data())
def test_cose_signatures_cover_every_payload_byte(
    payload: bytes, data: st.DataObject, p384: ec.EllipticCurvePrivateKey
) -> None:
    message = sign1(payload, p384, tagged=data.draw(st.booleans()))
    assert verify_sign1(message, p384.public_key()) == payload
    if payload:
        forged = bytearray(payload)
        forged[data.draw(st.integers(0, len(payload) - 1))] ^= data.draw(st.integers(1, 255))
        tampered = message.replace(payload, bytes(forged), 1) if message.count(payload) == 1 else None
        if tampered is not None:
            with pytest.raises(CoseError):
                verify_sign1(tampered, p384.public_key())


file_names = st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.py", fullmatch=True)
# Files end in .py and directories never do, so no path is both.
trees = st.dictionaries(file_names, st.binary(max_size=64), min_size=1, max_size=8)


def _write(root: Path, tree: dict[str, bytes], order: list[str]) -> Path:
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tree[name])
    return root


@given(tree=trees, data=st.data())
def test_measurement_depends_on_content_only(tree: dict[str, bytes], data: st.DataObject) -> None:
    order = data.draw(st.permutations(sorted(tree)))
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        first = measure_image(_write(Path(one), tree, sorted(tree)), runtime="r")
        second_root = _write(Path(two), tree, list(order))
        assert measure_image(second_root, runtime="r") == first
        changed = data.draw(st.sampled_from(sorted(tree)))
        (second_root / changed).write_bytes(tree[changed] + b"!")
        after = measure_image(second_root, runtime="r")
        assert after.pcr1 == first.pcr1 and after.pcr2 != first.pcr2 and after.pcr0 != first.pcr0
