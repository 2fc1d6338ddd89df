"""Image measurements: nitro-cli's PCR construction over an emulated image directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from emulator.nitro.measure import MeasureError, extend_from_zero, measure_image
from emulator.nitro.pki import TestPki

RUNTIME = "cpython 3.11.7 x86_64"


def make_image(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


FILES = {"vault/__init__.py": b"", "vault/enclave/app.py": b"print('hi')\n", "manifest.json": b"{}"}


def test_known_answer(tmp_path: Path) -> None:
    image = make_image(tmp_path / "img", {"a.py": b"A", "d/b.py": b"BB"})

    def field(data: bytes) -> bytes:
        return len(data).to_bytes(8, "big") + data

    bootstrap = field(RUNTIME.encode())
    application = b"F" + field(b"a.py") + field(b"A") + b"F" + field(b"d/b.py") + field(b"BB")

    def pcr(data: bytes) -> str:
        return hashlib.sha384(bytes(48) + hashlib.sha384(data).digest()).hexdigest()

    measured = measure_image(image, runtime=RUNTIME)
    assert measured.pcr0 == pcr(bootstrap + application)
    assert measured.pcr1 == pcr(bootstrap)
    assert measured.pcr2 == pcr(application)
    assert measured.pcr8 is None


def test_deterministic_and_independent_of_creation_order_and_metadata(tmp_path: Path) -> None:
    first = make_image(tmp_path / "one", FILES)
    second = make_image(tmp_path / "two", dict(reversed(FILES.items())))
    os.utime(second / "manifest.json", (0, 0))
    (second / "vault" / "enclave" / "app.py").chmod(0o755)
    assert measure_image(first) == measure_image(second)


def test_bytecode_caches_are_ignored(tmp_path: Path) -> None:
    image = make_image(tmp_path / "img", FILES)
    before = measure_image(image)
    make_image(image, {"vault/__pycache__/app.cpython-311.pyc": b"\x00", "vault/x.pyc": b"\x01"})
    assert measure_image(image) == before


def test_what_changes_which_pcr(tmp_path: Path) -> None:
    image = make_image(tmp_path / "img", FILES)
    base = measure_image(image, runtime=RUNTIME)
    (image / "vault" / "enclave" / "app.py").write_bytes(b"print('changed')\n")
    changed = measure_image(image, runtime=RUNTIME)
    assert changed.pcr1 == base.pcr1 and changed.pcr2 != base.pcr2 and changed.pcr0 != base.pcr0
    other_runtime = measure_image(image, runtime="cpython 3.12.1 x86_64")
    assert other_runtime.pcr2 == changed.pcr2 and other_runtime.pcr1 != changed.pcr1
    (image / "vault" / "enclave" / "app.py").rename(image / "vault" / "enclave" / "app2.py")
    assert measure_image(image, runtime=RUNTIME).pcr2 != changed.pcr2  # renames count


def test_path_and_content_boundaries_cannot_be_shifted(tmp_path: Path) -> None:
    one = make_image(tmp_path / "one", {"ab": b"c"})
    two = make_image(tmp_path / "two", {"a": b"bc"})
    assert measure_image(one).pcr2 != measure_image(two).pcr2


def test_symlinks_are_measured_by_target_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    image = make_image(tmp_path / "img", FILES)
    (image / "link").symlink_to(outside)
    before = measure_image(image)
    outside.write_bytes(b"changed outside the image")
    assert measure_image(image) == before
    (image / "link").unlink()
    (image / "link").symlink_to(tmp_path)
    assert measure_image(image) != before


def test_pcr8_is_the_signing_certificate(tmp_path: Path) -> None:
    pki = TestPki.create()
    measured = measure_image(
        make_image(tmp_path / "img", FILES), signing_certificate=pki.image_signing.certificate
    )
    der = pki.image_signing.certificate.public_bytes(Encoding.DER)
    assert measured.pcr8 == extend_from_zero(der).hex()
    assert measured.pcr8 == hashlib.sha384(bytes(48) + hashlib.sha384(der).digest()).hexdigest()


def test_unmeasurable_images(tmp_path: Path) -> None:
    with pytest.raises(MeasureError):
        measure_image(tmp_path / "missing")
    (tmp_path / "empty" / "__pycache__").mkdir(parents=True)
    with pytest.raises(MeasureError, match="no files"):
        measure_image(tmp_path / "empty")
    fifo_image = make_image(tmp_path / "fifo", FILES)
    os.mkfifo(fifo_image / "pipe")
    with pytest.raises(MeasureError, match="neither a regular file"):
        measure_image(fifo_image)
