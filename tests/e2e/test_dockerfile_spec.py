"""An enclave spec whose image is a Dockerfile (examples/nsm-dockerfile), on the container runtime.

``vault-emulator up --enclave examples/nsm-dockerfile/enclave.toml --enclave-runtime container
--enclave-devices``: the emulator measures the spec's build context, builds the Dockerfile
offline FROM its local base image and runs the container with the preload library, so the
example's program opens ``/dev/nsm`` and ``AF_VSOCK`` as on Nitro hardware. The test talks to
it over the emulated vsock as the parent (CID 3) and checks what it reports against what
the emulator measured, the document against the test PKI's root with ``cryptography`` only
(not the emulator's verifier), and that one changed byte of the program changes PCR0.
It runs when ``VAULT_E2E_STACKS`` names ``moto/container`` (``nox -s e2e`` does).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from e2e.conftest import stacks
from e2e.security.targets import REQUIRE_ENV
from emulator.daemon import lifecycle
from emulator.daemon.control import control_request
from emulator.daemon.state import read_state
from emulator.nitro.pki import TestPki
from emulator.tools.enclave_fixtures import RunningEnclave, start_nitro_enclave

STACK = "moto/container"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nsm-dockerfile"
SPEC = EXAMPLE / "enclave.toml"
PROGRAM = EXAMPLE / "app" / "main.py"
#: COSE algorithm ES384 (RFC 9053), the only one the NSM signs with.
ES384 = -35
REPLY_LIMIT = 64 * 1024

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting a Docker engine needs root"),
]


@pytest.fixture(scope="module")
def enclave(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEnclave]:
    if STACK not in stacks():
        pytest.skip(f"{STACK} is not among the stacks under test (VAULT_E2E_STACKS)")
    backend, _, runtime = STACK.partition("/")
    try:
        with start_nitro_enclave(
            SPEC,
            tmp_path_factory.mktemp("emulator-dockerfile"),
            backend=backend,
            enclave_runtime=runtime,
            enclave_devices=True,
        ) as running:
            yield running
    except lifecycle.StartupFailed as exc:
        unavailable = "Unavailable" in str(exc) or "not available" in str(exc)
        if unavailable and os.environ.get(REQUIRE_ENV) != "1":
            pytest.skip(f"{STACK} cannot run here: {str(exc).splitlines()[0]}")
        raise


def ask(enclave: RunningEnclave, nonce: bytes) -> dict[str, Any]:
    """One request to the example, as the parent over the emulated vsock."""
    with enclave.connect(timeout=30) as connection:
        connection.sendall(json.dumps({"nonce": nonce.hex()}).encode() + b"\n")
        data = b""
        while b"\n" not in data and len(data) <= REPLY_LIMIT:
            chunk = connection.recv(4096)
            if not chunk:
                break
            data += chunk
    reply: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    assert "error" not in reply, reply
    return reply


def current_facts(enclave: RunningEnclave) -> dict[str, Any]:
    state = read_state(enclave.state.layout.state_file)
    assert state is not None
    return state.facts


# -- an attestation document, checked with cbor2 and cryptography only ---------------------------


def document_parts(document: bytes) -> tuple[bytes, bytes, bytes]:
    """(protected header, payload, signature) of a COSE_Sign1 (RFC 9052), tagged or not."""
    sign1 = cbor2.loads(document)
    if isinstance(sign1, cbor2.CBORTag):
        assert sign1.tag == 18
        sign1 = sign1.value
    protected, _unprotected, payload, signature = sign1
    assert cbor2.loads(protected) == {1: ES384}
    return protected, payload, signature


def check_signature(
    protected: bytes, payload: bytes, signature: bytes, key: ec.EllipticCurvePublicKey
) -> None:
    """ECDSA P-384 over the Sig_structure; the signature is r || s, 48 bytes each."""
    assert len(signature) == 96
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    key.verify(der, to_be_signed, ec.ECDSA(hashes.SHA384()))


def check_chain(root: x509.Certificate, cabundle: list[bytes], leaf: x509.Certificate) -> None:
    """``cabundle`` starts at ``root``; each certificate, and the leaf, is issued by the one before."""
    chain = [x509.load_der_x509_certificate(der) for der in cabundle]
    assert chain[0] == root
    now = dt.datetime.now(dt.UTC)
    for issuer, subject in zip(chain, [*chain[1:], leaf], strict=True):
        subject.verify_directly_issued_by(issuer)
        assert subject.not_valid_before_utc <= now <= subject.not_valid_after_utc


def test_the_app_reads_the_pcr0_the_emulator_measured(enclave: RunningEnclave) -> None:
    reply = ask(enclave, secrets.token_bytes(32))
    facts = enclave.state.facts
    # Measured at up (the key policy's) and at the launch that runs.
    assert reply["pcr0"] == enclave.pcrs[0] == facts["running_pcr0"]
    assert reply["pcr0"] != "00" * 48 and reply["pcr0_locked"] is True
    assert reply["document_pcr0"] == reply["pcr0"]
    # What runs is the example's program, built into the image from the Dockerfile.
    assert reply["program_sha256"] == hashlib.sha256(PROGRAM.read_bytes()).hexdigest()
    row = enclave.state.component("enclave")
    assert row is not None and "container nitro-enclave-nsm-dockerfile:" in row.detail


def test_the_document_verifies_against_the_test_pki_root(enclave: RunningEnclave) -> None:
    nonce = secrets.token_bytes(32)
    document = base64.b64decode(ask(enclave, nonce)["document"])
    protected, payload_bytes, signature = document_parts(document)
    payload = cbor2.loads(payload_bytes)
    leaf = x509.load_der_x509_certificate(payload["certificate"])
    root = x509.load_pem_x509_certificate((enclave.state.layout.pki / "root.pem").read_bytes())
    check_chain(root, payload["cabundle"], leaf)
    leaf_key = leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey) and leaf_key.curve.name == "secp384r1"
    check_signature(protected, payload_bytes, signature, leaf_key)
    assert payload["digest"] == "SHA384" and payload["nonce"] == nonce
    assert payload["pcrs"][0].hex() == enclave.pcrs[0]
    assert payload["public_key"] is None and payload["user_data"] is None
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromtimestamp(payload["timestamp"] / 1000, dt.UTC)
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=5)

    # The checks can fail: a payload claiming another PCR0 does not carry the signature,
    # and another root (another test PKI) did not issue the chain.
    forged = dict(payload, pcrs={**payload["pcrs"], 0: bytes(48)})
    with pytest.raises(InvalidSignature):
        check_signature(protected, cbor2.dumps(forged), signature, leaf_key)
    other_root = TestPki.create().root.certificate
    with pytest.raises(AssertionError):
        check_chain(other_root, payload["cabundle"], leaf)
    intermediate = x509.load_der_x509_certificate(payload["cabundle"][1])
    with pytest.raises((InvalidSignature, ValueError)):
        intermediate.verify_directly_issued_by(other_root)


def test_a_changed_byte_of_the_app_changes_pcr0(enclave: RunningEnclave) -> None:
    original = PROGRAM.read_text(encoding="utf-8")
    changed = original.replace("nsm-dockerfile:", "nsm-dockerfilE:", 1)
    assert len(changed) == len(original) and sum(a != b for a, b in zip(changed, original, strict=True)) == 1
    layout = enclave.state.layout
    reply = control_request(layout, {"op": "relaunch-enclave", "overrides": {"main.py": changed}})
    assert reply["ok"], reply
    relaunched = reply["result"]
    assert relaunched["pcr0"] != enclave.pcrs[0] == relaunched["policy_pcr0"]
    answer = ask(enclave, secrets.token_bytes(16))
    # The rebuilt container runs the changed program, and the NSM attests its measurement.
    assert answer["program_sha256"] == hashlib.sha256(changed.encode()).hexdigest()
    assert answer["pcr0"] == answer["document_pcr0"] == relaunched["pcr0"]
    assert current_facts(enclave)["running_pcr0"] == relaunched["pcr0"]

    # The original image again: measured again, the same PCR0 as at up.
    restored = control_request(layout, {"op": "relaunch-enclave", "overrides": {}})
    assert restored["ok"], restored
    assert restored["result"]["pcr0"] == enclave.pcrs[0]
    again = ask(enclave, secrets.token_bytes(16))
    assert again["pcr0"] == enclave.pcrs[0]
    assert again["program_sha256"] == hashlib.sha256(PROGRAM.read_bytes()).hexdigest()
