"""examples/nsm-dockerfile without a container: its spec, its refusal on the namespace runtime, its CBOR.

The example's enclave (``app/main.py``) encodes its NSM requests and decodes the NSM's
answers and the attestation document with its own CBOR code (the base image has no CBOR
library), so that code is checked here against ``cbor2`` (what the NSM emulator and the
vault use) and against a document the emulated NSM signed. The example itself runs in
``tests/e2e/test_dockerfile_spec.py`` (container runtime, device mode).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.daemon.components.image import DOCKERFILE_NAME, assemble_spec_image
from emulator.daemon.config import EmulatorConfig
from emulator.daemon.enclave_spec import SPEC_ERROR_CODE, EnclaveSpecError, load_spec
from emulator.nitro.image import assemble_image
from emulator.nitro.measure import measure_image
from emulator.tools import cli
from emulator.tools.enclave_fixtures import emulated_nsm
from vault.infra.key_policy import EnclaveMeasurements

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "nsm-dockerfile"
SPEC = EXAMPLE / "enclave.toml"
REGION = "us-east-1"


def load_app() -> ModuleType:
    """The example's program as a module (importing it starts nothing: main() runs as a script only)."""
    spec = importlib.util.spec_from_file_location("nsm_dockerfile_main", EXAMPLE / "app" / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


APP = load_app()

#: What the app encodes: the NSM's request vocabulary (no floats, no tags).
encodable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


def test_the_spec_builds_the_context_with_the_dockerfile_beside_it() -> None:
    spec = load_spec(SPEC, region=REGION)
    assert spec.image.kind == "dockerfile"
    assert spec.image.root == EXAMPLE / "app"
    assert spec.image.dockerfile == EXAMPLE / "Dockerfile"
    assert spec.ports == (APP.LISTEN_PORT,)
    # Built FROM the base the container runtime passes (its BASE_IMAGE build argument), and
    # nothing runs at build time that could fetch anything.
    dockerfile = spec.image.dockerfile.read_text(encoding="utf-8")
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith("#")]
    assert "FROM ${BASE_IMAGE}" in dockerfile and "ARG" in instructions[:1]
    assert "RUN" not in instructions and "ADD" not in instructions


def test_the_measured_image_is_the_context_and_a_byte_of_the_app_changes_pcr0(tmp_path: Path) -> None:
    context = EXAMPLE / "app"
    original = assemble_image(tmp_path / "a", root=context, sources=("",), name="enclave-nsm-dockerfile")
    program = (context / "main.py").read_bytes()
    flipped = program.replace(b"nsm-dockerfile:", b"nsm-dockerfilE:", 1)
    assert flipped != program and len(flipped) == len(program)
    changed = assemble_image(
        tmp_path / "b",
        root=context,
        sources=("",),
        name="enclave-nsm-dockerfile",
        overrides={"main.py": flipped},
    )
    assert set(original.manifest["files"]) >= {"main.py"}  # type: ignore[operator]
    assert measure_image(original.directory).pcr0 != measure_image(changed.directory).pcr0


def test_the_namespace_runtime_refuses_the_example_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    with pytest.raises(EnclaveSpecError) as refused:
        EmulatorConfig(state_dir=state_dir, enclave_spec=SPEC, enclave_runtime="namespace")
    assert refused.value.key == "image.dockerfile"
    assert cli.main(["up", "--state-dir", str(state_dir), "--port", "0", "--enclave", str(SPEC)]) == 2
    assert f"[{SPEC_ERROR_CODE}] image.dockerfile: a Dockerfile image needs the container runtime" in (
        capsys.readouterr().err
    )
    assert not state_dir.exists()


def test_the_requests_are_what_cbor2_writes() -> None:
    assert APP.cbor_encode({"DescribePCR": {"index": 0}}) == cbor2.dumps({"DescribePCR": {"index": 0}})
    for nonce in (None, b"", bytes(range(256)) * 2):
        body = {"user_data": None, "nonce": nonce, "public_key": None}
        assert APP.cbor_encode({"Attestation": body}) == cbor2.dumps({"Attestation": body})


@given(encodable)
def test_encoding_agrees_with_cbor2(value: Any) -> None:
    assert APP.cbor_encode(value) == cbor2.dumps(value)


@given(encodable | st.floats(allow_nan=False))
def test_decoding_agrees_with_cbor2(value: Any) -> None:
    assert APP.cbor_decode(cbor2.dumps(value)) == cbor2.loads(cbor2.dumps(value))


@given(st.binary(max_size=64))
def test_decoding_garbage_fails_only_with_a_cbor_error(data: bytes) -> None:
    # An NSM answer or document the app cannot read must not end its serving loop.
    try:
        APP.cbor_decode(data)
    except APP.CborError:
        pass


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # The document payload's map has an indefinite length on hardware.
        (b"\xbf\x61a\x01\x61b\x9f\x01\x02\xff\xff", {"a": 1, "b": [1, 2]}),
        (b"\x5f\x41a\x41b\xff", b"ab"),
        (b"\x7f\x61a\x62bc\xff", "abc"),
        # COSE_Sign1 with its tag (18): the array.
        (b"\xd2\x84\x40\xa0\x40\x40", [b"", {}, b"", b""]),
    ],
)
def test_indefinite_lengths_and_tags_decode(data: bytes, expected: Any) -> None:
    assert APP.cbor_decode(data) == expected
    read = cbor2.loads(data)
    assert (list(read.value) if isinstance(read, cbor2.CBORTag) else read) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"\x5f\x61a\xff",  # a text chunk in indefinite-length bytes
        b"\xbf\x61a\x01",  # an indefinite-length map without its break
        b"\x1c",  # a reserved length
        b"\x43ab",  # truncated
        b"\xf6\xf6",  # trailing item
        b"\x63\xff\xfe\xfd",  # text that is not UTF-8
        b"\xa1\x80\x00",  # a map keyed by an array
        b"\x81" * 40 + b"\x00",  # nested too deeply
    ],
)
def test_malformed_cbor_is_refused(data: bytes) -> None:
    with pytest.raises(APP.CborError):
        APP.cbor_decode(data)


def test_the_pcr0_of_a_signed_document_is_read_from_its_payload() -> None:
    measurements = EnclaveMeasurements(pcr0="5a" * 48, pcr1="b1" * 48, pcr2="c2" * 48)
    with emulated_nsm() as nsm:
        document = nsm.attest(measurements, nonce=b"n" * 16)
    assert APP.document_pcr0(document).hex() == measurements.pcr0
    with pytest.raises(APP.NsmError) as refused:
        APP.document_pcr0(cbor2.dumps([b"", {}, cbor2.dumps({"pcrs": {1: b"x"}}), b""]))
    assert refused.value.code == "InvalidDocument"


def test_a_bad_request_line_is_answered_without_asking_the_nsm() -> None:
    for line in (b"not json", b'{"nonce": "zz"}', b'{"nonce": "' + b"00" * 513 + b'"}', b"[1]"):
        assert APP.answer(line) == {"error": {"code": "BadRequest"}}


def test_the_dockerfile_is_part_of_the_measured_image(tmp_path: Path) -> None:
    """A changed Dockerfile step (e.g. one that rewrites main.py at build time) is another PCR0."""
    spec = load_spec(SPEC, region=REGION)
    assert spec.image.dockerfile is not None
    built = assemble_spec_image(spec, tmp_path / "image")
    assert (built.directory / DOCKERFILE_NAME).read_bytes() == spec.image.dockerfile.read_bytes()
    assert DOCKERFILE_NAME in built.manifest["files"]  # type: ignore[operator]
    changed = assemble_spec_image(
        spec,
        tmp_path / "changed",
        overrides={DOCKERFILE_NAME: spec.image.dockerfile.read_bytes() + b"RUN true\n"},
    )
    assert measure_image(built.directory).pcr0 != measure_image(changed.directory).pcr0
