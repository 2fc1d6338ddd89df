"""The NSM: the enclave's client (ioctl and socket encodings) and the emulated service."""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from emulator.nitro.attestation import AttestationDocument, AttestationError, verify_document
from emulator.nitro.cose import decode_sign1
from emulator.nitro.nsm import NsmService, NsmServiceError
from emulator.nitro.pki import TestPki
from vault.common.framing import read_frame, write_frame
from vault.enclave import nsm as client
from vault.enclave.nsm import DeviceNsm, NsmError, SocketNsm, nsm_from_env
from vault.infra.key_policy import EnclaveMeasurements

from .conftest import INSTANCE_ROLE, MEASUREMENTS, PCR3

ZERO = bytes(48)
MAX_AGE = dt.timedelta(minutes=5)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- the enclave's client: encodings ----------------------------------------------------------


def test_ioctl_request_code_is_iowr_0x0a_0_nsm_raw() -> None:
    # _IOWR(0x0A, 0, sizeof(struct nsm_raw) = 32) = dir 3 << 30 | 32 << 16 | 0x0A << 8 | 0.
    assert client.NSM_IOCTL_RAW == 0xC0200A00


def test_attestation_request_encoding_matches_serde() -> None:
    encoded = client.encode_attestation_request(b"\x01\x02", None, b"n")
    # {"Attestation": {"user_data": null, "nonce": h'6e', "public_key": h'0102'}}
    assert encoded == bytes.fromhex(
        "a1" + "6b" + b"Attestation".hex() + "a3"
        "69" + b"user_data".hex() + "f6"
        "65" + b"nonce".hex() + "41" + "6e"
        "6a" + b"public_key".hex() + "42" + "0102"
    )
    assert cbor2.loads(client.encode_describe_pcr_request(3)) == {"DescribePCR": {"index": 3}}


def test_attestation_request_limits() -> None:
    with pytest.raises(NsmError) as too_large:
        client.encode_attestation_request(b"k" * 1025, None, None)
    assert too_large.value.code == "InputTooLarge"
    with pytest.raises(NsmError):
        client.encode_attestation_request(None, b"u" * 513, None)
    with pytest.raises(NsmError):
        client.encode_attestation_request(None, None, b"n" * 513)
    client.encode_attestation_request(b"k" * 1024, b"u" * 512, b"n" * 512)


def test_response_decoding() -> None:
    ok = cbor2.dumps({"Attestation": {"document": b"doc"}})
    assert client.decode_attestation_response(ok) == b"doc"
    with pytest.raises(NsmError) as refused:
        client.decode_attestation_response(cbor2.dumps({"Error": "InvalidArgument"}))
    assert refused.value.code == "InvalidArgument"
    for bad in (
        b"\xff",
        cbor2.dumps({"DescribePCR": {}}),
        cbor2.dumps({"Attestation": {}}),
        cbor2.dumps([1]),
    ):
        with pytest.raises(NsmError):
            client.decode_attestation_response(bad)
    pcr = client.decode_describe_pcr_response(cbor2.dumps({"DescribePCR": {"lock": True, "data": ZERO}}), 4)
    assert pcr == client.PcrDescription(index=4, locked=True, value=ZERO)


def test_raw_response_length_comes_from_the_driver() -> None:
    buffer = b"\xa1" + b"\x00" * (client.RESPONSE_MAX_SIZE - 1)
    raw = struct.pack("=QQQQ", 1, 2, 3, 1)
    assert client.response_from_raw(raw, buffer) == b"\xa1"
    for length in (0, client.RESPONSE_MAX_SIZE + 1):
        with pytest.raises(NsmError, match="invalid response length"):
            client.response_from_raw(struct.pack("=QQQQ", 1, 2, 3, length), buffer)


def test_device_nsm_speaks_the_raw_ioctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in driver: reads the request through nsm_raw, writes a response and its length."""
    device = tmp_path / "nsm"
    device.write_bytes(b"")
    seen: list[object] = []

    def fake_ioctl(fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        assert request == 0xC0200A00 and mutate and len(arg) == 32
        req_addr, req_len, resp_addr, resp_cap = struct.unpack("=QQQQ", arg)
        seen.append(cbor2.loads(ctypes.string_at(req_addr, req_len)))
        assert resp_cap == client.RESPONSE_MAX_SIZE
        response = cbor2.dumps({"Attestation": {"document": b"signed-document"}})
        ctypes.memmove(resp_addr, response, len(response))
        arg[24:32] = struct.pack("=Q", len(response))
        return 0

    monkeypatch.setattr(client.fcntl, "ioctl", fake_ioctl)
    assert DeviceNsm(str(device)).attestation(public_key=b"spki", nonce=b"n") == b"signed-document"
    assert seen == [{"Attestation": {"user_data": None, "nonce": b"n", "public_key": b"spki"}}]

    def failing_ioctl(fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(client.fcntl, "ioctl", failing_ioctl)
    with pytest.raises(NsmError, match="ioctl failed"):
        DeviceNsm(str(device)).attestation()


def test_device_nsm_reports_a_missing_device(tmp_path: Path) -> None:
    with pytest.raises(NsmError, match="cannot open"):
        DeviceNsm(str(tmp_path / "nsm")).attestation(public_key=b"k")


def test_nsm_from_env() -> None:
    assert isinstance(nsm_from_env({}), DeviceNsm)
    assert nsm_from_env({"VAULT_NSM": "/dev/nsm"}).path == "/dev/nsm"  # type: ignore[attr-defined]
    socket_nsm = nsm_from_env({"VAULT_NSM": "uds:/run/nsm.sock"})
    assert isinstance(socket_nsm, SocketNsm) and socket_nsm.path == Path("/run/nsm.sock")
    for bad in ("uds:", "nsm", "tcp://x"):
        with pytest.raises(ValueError):
            nsm_from_env({"VAULT_NSM": bad})


# -- the emulated service -------------------------------------------------------------------


@pytest.fixture
def service(pki: TestPki, short_dir: Path):
    with NsmService(pki, short_dir / "nsm") as nsm:
        yield nsm


def parsed(document: bytes) -> AttestationDocument:
    return AttestationDocument.from_cbor(decode_sign1(document).payload)


def test_documents_verify_and_carry_the_registered_pcrs(service: NsmService, pki: TestPki) -> None:
    path = service.register_enclave("enc-a", MEASUREMENTS, PCR3, instance_id="i-0123456789abcdef0")
    assert path.exists() and os.stat(path).st_mode & 0o777 == 0o600
    document = SocketNsm(path).attestation(public_key=b"spki", user_data=b"user", nonce=b"nonce")
    verified = verify_document(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert verified.module_id.startswith("i-0123456789abcdef0-enc")
    assert sorted(verified.pcrs) == list(range(16)) and {len(v) for v in verified.pcrs.values()} == {48}
    assert verified.pcr_hex(0) == MEASUREMENTS.pcr0
    assert verified.pcr_hex(1) == MEASUREMENTS.pcr1
    assert verified.pcr_hex(2) == MEASUREMENTS.pcr2
    assert verified.pcr_hex(3) == hashlib.sha384(ZERO + INSTANCE_ROLE.encode()).hexdigest() == PCR3
    assert verified.pcrs[4] == hashlib.sha384(ZERO + b"i-0123456789abcdef0").digest()
    assert verified.pcr_hex(8) == MEASUREMENTS.pcr8
    assert all(verified.pcrs[i] == ZERO for i in (5, 6, 7, *range(9, 16)))
    assert (verified.public_key, verified.user_data, verified.nonce) == (b"spki", b"user", b"nonce")
    assert verified.cabundle == (pki.root.der, pki.intermediate.der)
    assert abs(verified.timestamp - now()) < dt.timedelta(seconds=5)


def test_nitro_style_enclave_ids_are_the_module_id(service: NsmService) -> None:
    enclave_id = "i-0e1a2b3c4d5e6f708-enc0123456789abcdef"
    path = service.register_enclave(enclave_id, MEASUREMENTS, PCR3, instance_id="i-0e1a2b3c4d5e6f708")
    assert parsed(SocketNsm(path).attestation()).module_id == enclave_id


def test_absent_optionals_are_null(service: NsmService) -> None:
    path = service.register_enclave("enc-null", MEASUREMENTS, PCR3)
    payload = cbor2.loads(decode_sign1(SocketNsm(path).attestation()).payload)
    assert list(payload) == [
        *("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"),
        *("public_key", "user_data", "nonce"),
    ]
    assert payload["public_key"] is payload["user_data"] is payload["nonce"] is None
    assert payload["digest"] == "SHA384"


def test_debug_mode_zeroes_every_pcr(service: NsmService, pki: TestPki) -> None:
    path = service.register_enclave("enc-debug", MEASUREMENTS, PCR3, debug_mode=True)
    verified = verify_document(
        SocketNsm(path).attestation(), pki.root.certificate, now=now(), max_age=MAX_AGE
    )
    assert set(verified.pcrs.values()) == {ZERO} and len(verified.pcrs) == 16


def test_the_enclave_cannot_choose_its_pcrs(service: NsmService) -> None:
    path = service.register_enclave("enc-choose", MEASUREMENTS, PCR3)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        forged = {"public_key": None, "user_data": None, "nonce": None, "pcrs": {0: b"\x11" * 48}}
        write_frame(sock, cbor2.dumps({"Attestation": forged}))
        document = cbor2.loads(read_frame(sock))["Attestation"]["document"]
    assert parsed(document).pcr_hex(0) == MEASUREMENTS.pcr0
    # Nor extend or lock them.
    nsm = SocketNsm(path)
    for request in ({"ExtendPCR": {"index": 0, "data": b"x"}}, {"LockPCRs": {"range": 16}}, "GetRandom"):
        assert cbor2.loads(nsm.exchange(cbor2.dumps(request))) == {"Error": "InvalidOperation"}


def test_describe_pcr_and_errors(service: NsmService) -> None:
    nsm = SocketNsm(service.register_enclave("enc-describe", MEASUREMENTS, PCR3))
    description = nsm.describe_pcr(0)
    assert description.locked and description.value.hex() == MEASUREMENTS.pcr0
    with pytest.raises(NsmError) as bad_index:
        nsm.describe_pcr(40)
    assert bad_index.value.code == "InvalidIndex"
    assert cbor2.loads(nsm.exchange(b"\xff")) == {"Error": "InvalidArgument"}
    assert cbor2.loads(nsm.exchange(cbor2.dumps({"Attestation": {"user_data": b"u" * 600}}))) == {
        "Error": "InputTooLarge"
    }
    assert cbor2.loads(nsm.exchange(b"\x00" * 5000)) == {"Error": "InputTooLarge"}
    described = cbor2.loads(nsm.exchange(cbor2.dumps("DescribeNSM")))["DescribeNSM"]
    assert described["digest"] == "SHA384" and described["max_pcrs"] == 32


def test_identity_comes_from_the_socket(service: NsmService) -> None:
    other = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48)
    first = service.register_enclave("enc-one", MEASUREMENTS, PCR3)
    second = service.register_enclave("enc-two", other, PCR3)
    assert parsed(SocketNsm(first).attestation()).pcr_hex(0) == MEASUREMENTS.pcr0
    assert parsed(SocketNsm(second).attestation()).pcr_hex(0) == other.pcr0


def test_registered_process_tree_is_enforced(service: NsmService) -> None:
    mine = service.register_enclave("enc-mine", MEASUREMENTS, PCR3, pid=os.getppid())
    assert SocketNsm(mine).attestation()  # this process descends from its parent
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = service.register_enclave("enc-theirs", MEASUREMENTS, PCR3, pid=stranger.pid)
        with pytest.raises(NsmError, match="cannot reach the NSM"):
            SocketNsm(theirs, timeout=2).attestation()
    finally:
        stranger.kill()
        stranger.wait()


def test_registration_rules(service: NsmService) -> None:
    path = service.register_enclave("enc-rules", MEASUREMENTS, PCR3)
    with pytest.raises(NsmServiceError, match="already registered"):
        service.register_enclave("enc-rules", MEASUREMENTS, PCR3)
    for bad_id in ("", "../escape", "x" * 65, "white space"):
        with pytest.raises(NsmServiceError):
            service.register_enclave(bad_id, MEASUREMENTS, PCR3)
    with pytest.raises(NsmServiceError):
        service.register_enclave("enc-bad-pcr3", MEASUREMENTS, "ab")
    service.unregister_enclave("enc-rules")
    assert not path.exists()
    with pytest.raises(NsmError):
        SocketNsm(path, timeout=1).attestation()


def test_leaf_is_renewed_before_it_expires(pki: TestPki, short_dir: Path) -> None:
    clock = [now()]
    with NsmService(pki, short_dir / "renew", clock=lambda: clock[0]) as service:
        path = service.register_enclave("enc-renew", MEASUREMENTS, PCR3)
        first = parsed(SocketNsm(path).attestation()).certificate
        clock[0] += dt.timedelta(hours=2, minutes=55)
        renewed = SocketNsm(path).attestation()
        assert parsed(renewed).certificate != first
        verify_document(renewed, pki.root.certificate, now=clock[0], max_age=MAX_AGE)


def test_verifier_refuses_stale_and_future_documents(service: NsmService, pki: TestPki) -> None:
    document = SocketNsm(service.register_enclave("enc-time", MEASUREMENTS, PCR3)).attestation()
    with pytest.raises(AttestationError) as stale:
        verify_document(document, pki.root.certificate, now=now() + dt.timedelta(minutes=6), max_age=MAX_AGE)
    assert stale.value.reason == "stale"
    with pytest.raises(AttestationError) as future:
        verify_document(document, pki.root.certificate, now=now() - dt.timedelta(minutes=3), max_age=MAX_AGE)
    assert future.value.reason == "stale"
