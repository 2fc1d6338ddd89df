"""The NSM: the enclave's client (ioctl and socket encodings) and the emulated service."""

from __future__ import annotations

import ctypes
import datetime as dt
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest

from emulator.host import procfs
from emulator.nitro.attestation import AttestationDocument, AttestationError, verify_document
from emulator.nitro.cose import decode_sign1
from emulator.nitro.nsm import NsmService, NsmServiceError, PeerCredentials, PidNamespace, ProcessTree
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
        client.encode_attestation_request(None, b"u" * 1025, None)
    with pytest.raises(NsmError):
        client.encode_attestation_request(None, None, b"n" * 1025)
    # Real documents carry 1024 bytes of each (blocky-nitrite-2024-09-07 in the fixtures).
    client.encode_attestation_request(b"k" * 1024, b"u" * 1024, b"n" * 1024)


def test_other_request_encodings_match_serde() -> None:
    # Struct variants are one-entry maps with the fields in declaration order; unit variants bare text.
    assert client.encode_extend_pcr_request(16, b"\x01") == bytes.fromhex(
        "a1" + "69" + b"ExtendPCR".hex() + "a2" + "65" + b"index".hex() + "10" + "64" + b"data".hex() + "4101"
    )
    assert cbor2.loads(client.encode_lock_pcr_request(17)) == {"LockPCR": {"index": 17}}
    assert cbor2.loads(client.encode_lock_pcrs_request(32)) == {"LockPCRs": {"range": 32}}
    assert client.encode_describe_nsm_request() == bytes.fromhex("6b" + b"DescribeNSM".hex())
    assert client.encode_get_random_request() == bytes.fromhex("69" + b"GetRandom".hex())
    for encode in (
        client.encode_describe_pcr_request,
        client.encode_lock_pcr_request,
        client.encode_lock_pcrs_request,
    ):
        with pytest.raises(NsmError) as out_of_range:
            encode(0x10000)
        assert out_of_range.value.code == "InvalidIndex"


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


def test_other_response_decoding() -> None:
    assert (
        client.decode_extend_pcr_response(cbor2.dumps({"ExtendPCR": {"data": b"\x07" * 48}})) == b"\x07" * 48
    )
    assert client.decode_get_random_response(cbor2.dumps({"GetRandom": {"random": b"r" * 256}})) == b"r" * 256
    client.decode_unit_response(cbor2.dumps("LockPCR"), "LockPCR")
    client.decode_unit_response(cbor2.dumps("LockPCRs"), "LockPCRs")
    described = {
        "version_major": 1, "version_minor": 0, "version_patch": 0, "module_id": "i-1-enc2",
        "max_pcrs": 32, "locked_pcrs": list(range(16)), "digest": "SHA384",
    }  # fmt: skip
    assert client.decode_describe_nsm_response(
        cbor2.dumps({"DescribeNSM": described})
    ) == client.NsmDescription(
        version=(1, 0, 0),
        module_id="i-1-enc2",
        max_pcrs=32,
        locked_pcrs=frozenset(range(16)),
        digest="SHA384",
    )
    refusals = [
        (client.decode_unit_response, cbor2.dumps("LockPCRs"), "LockPCR"),
        (client.decode_unit_response, cbor2.dumps({"Error": "ReadOnlyIndex"}), "LockPCR"),
    ]
    for decode, data, operation in refusals:
        with pytest.raises(NsmError):
            decode(data, operation)
    with pytest.raises(NsmError) as read_only:
        client.decode_extend_pcr_response(cbor2.dumps({"Error": "ReadOnlyIndex"}))
    assert read_only.value.code == "ReadOnlyIndex"
    for broken in ({"max_pcrs": -1}, {"locked_pcrs": [True]}, {"module_id": None}, {"version_major": "1"}):
        with pytest.raises(NsmError) as malformed:
            client.decode_describe_nsm_response(cbor2.dumps({"DescribeNSM": {**described, **broken}}))
        assert malformed.value.code == "InvalidResponse"
    empties: list[dict[str, dict[str, bytes]]] = [{"ExtendPCR": {"data": b""}}, {"ExtendPCR": {}}]
    for empty in empties:
        with pytest.raises(NsmError):
            client.decode_extend_pcr_response(cbor2.dumps(empty))


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

    monkeypatch.setattr(fcntl, "ioctl", fake_ioctl)
    assert DeviceNsm(str(device)).attestation(public_key=b"spki", nonce=b"n") == b"signed-document"
    assert seen == [{"Attestation": {"user_data": None, "nonce": b"n", "public_key": b"spki"}}]

    def failing_ioctl(fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(fcntl, "ioctl", failing_ioctl)
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
def service(pki: TestPki, short_dir: Path) -> Iterator[NsmService]:
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
    # root, regional, zonal, the instance's CA: as on AWS.
    assert verified.cabundle == pki.chain(pki.instance_ca("i-0123456789abcdef0"))
    assert len(verified.cabundle) == 4
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


def test_debug_mode_zeroes_the_image_pcrs_only(service: NsmService, pki: TestPki) -> None:
    # As real debug-mode documents show (the *-debug-* fixtures): PCR0, 1, 2 and 8 zero, PCR3 and 4 kept.
    normal = parsed(SocketNsm(service.register_enclave("enc-normal", MEASUREMENTS, PCR3)).attestation())
    path = service.register_enclave("enc-debug", MEASUREMENTS, PCR3, debug_mode=True)
    verified = verify_document(
        SocketNsm(path).attestation(), pki.root.certificate, now=now(), max_age=MAX_AGE
    )
    assert len(verified.pcrs) == 16
    assert all(verified.pcrs[index] == ZERO for index in (0, 1, 2, 8))
    assert verified.pcr_hex(3) == PCR3 and verified.pcrs[3] != ZERO
    assert verified.pcrs[4] == normal.pcrs[4] != ZERO
    assert all(verified.pcrs[index] == ZERO for index in (5, 6, 7, *range(9, 16)))


def test_the_enclave_cannot_choose_its_pcrs(service: NsmService) -> None:
    path = service.register_enclave("enc-choose", MEASUREMENTS, PCR3)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        forged = {"public_key": None, "user_data": None, "nonce": None, "pcrs": {0: b"\x11" * 48}}
        write_frame(sock, cbor2.dumps({"Attestation": forged}))
        document = cbor2.loads(read_frame(sock))["Attestation"]["document"]
    assert parsed(document).pcr_hex(0) == MEASUREMENTS.pcr0
    # Nor extend PCRs 0-15: they are locked from launch.
    nsm = SocketNsm(path)
    for index in range(16):
        with pytest.raises(NsmError) as read_only:
            nsm.extend_pcr(index, b"x")
        assert read_only.value.code == "ReadOnlyIndex"
        with pytest.raises(NsmError) as relock:
            nsm.lock_pcr(index)
        assert relock.value.code == "ReadOnlyIndex"
    nsm.lock_pcrs(16)  # locking what is locked changes nothing
    assert parsed(nsm.attestation()).pcr_hex(0) == MEASUREMENTS.pcr0


def test_describe_pcr_and_errors(service: NsmService) -> None:
    nsm = SocketNsm(service.register_enclave("enc-describe", MEASUREMENTS, PCR3))
    description = nsm.describe_pcr(0)
    assert description.locked and description.value.hex() == MEASUREMENTS.pcr0
    with pytest.raises(NsmError) as bad_index:
        nsm.describe_pcr(40)
    assert bad_index.value.code == "InvalidIndex"
    assert cbor2.loads(nsm.exchange(b"\xff")) == {"Error": "InvalidArgument"}
    assert cbor2.loads(nsm.exchange(cbor2.dumps({"Attestation": {"user_data": b"u" * 1025}}))) == {
        "Error": "InputTooLarge"
    }
    assert cbor2.loads(nsm.exchange(b"\x00" * 5000)) == {"Error": "InputTooLarge"}
    assert cbor2.loads(nsm.exchange(cbor2.dumps({"Sign": {"data": b"x"}}))) == {"Error": "InvalidOperation"}
    assert cbor2.loads(nsm.exchange(cbor2.dumps({"ExtendPCR": {"index": "16", "data": b"x"}}))) == {
        "Error": "InvalidArgument"
    }
    assert cbor2.loads(nsm.exchange(cbor2.dumps({"ExtendPCR": {"index": 16}}))) == {
        "Error": "InvalidArgument"
    }


def test_describe_nsm_as_the_real_module(service: NsmService) -> None:
    path = service.register_enclave("i-0e1a2b3c4d5e6f708-enc0123456789abcdef", MEASUREMENTS, PCR3)
    nsm = SocketNsm(path)
    # What nsm-check (aws-nitro-enclaves-nsm-api) expects at launch.
    assert nsm.describe_nsm() == client.NsmDescription(
        version=(1, 0, 0),
        module_id="i-0e1a2b3c4d5e6f708-enc0123456789abcdef",
        max_pcrs=32,
        locked_pcrs=frozenset(range(16)),
        digest="SHA384",
    )
    for index in range(32):
        described = nsm.describe_pcr(index)
        assert described.locked == (index < 16) and len(described.value) == 48
        # PCR0-4 measured (PCR3 from the instance role), PCR8 from the signing certificate.
        assert (described.value == ZERO) == (index >= 5 and index != 8)
    with pytest.raises(NsmError) as beyond:
        nsm.describe_pcr(32)
    assert beyond.value.code == "InvalidIndex"


def test_pcrs_16_to_31_are_extended_and_locked(service: NsmService, pki: TestPki) -> None:
    nsm = SocketNsm(service.register_enclave("enc-extend", MEASUREMENTS, PCR3))
    first = nsm.extend_pcr(16, b"config v1")
    assert first == hashlib.sha384(ZERO + b"config v1").digest()
    assert nsm.extend_pcr(16, b"more") == hashlib.sha384(first + b"more").digest()
    assert nsm.describe_pcr(16) == client.PcrDescription(16, False, hashlib.sha384(first + b"more").digest())
    # A document carries the locked PCRs only.
    assert sorted(parsed(nsm.attestation()).pcrs) == list(range(16))
    nsm.lock_pcr(16)
    with pytest.raises(NsmError) as read_only:
        nsm.extend_pcr(16, b"after the lock")
    assert read_only.value.code == "ReadOnlyIndex"
    with pytest.raises(NsmError) as locked_twice:
        nsm.lock_pcr(16)
    assert locked_twice.value.code == "ReadOnlyIndex"
    document = verify_document(nsm.attestation(), pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert sorted(document.pcrs) == list(range(17))
    assert document.pcrs[16] == hashlib.sha384(first + b"more").digest()
    assert nsm.describe_nsm().locked_pcrs == frozenset(range(17))
    for index, code in ((32, "InvalidIndex"), (0xFFFF, "InvalidIndex")):
        with pytest.raises(NsmError) as refused:
            nsm.extend_pcr(index, b"x")
        assert refused.value.code == code
    with pytest.raises(NsmError) as too_many:
        nsm.lock_pcrs(33)
    assert too_many.value.code == "InvalidIndex"
    nsm.lock_pcrs(32)
    assert nsm.describe_nsm().locked_pcrs == frozenset(range(32))
    assert sorted(parsed(nsm.attestation()).pcrs) == list(range(32))
    with pytest.raises(NsmError):
        nsm.extend_pcr(31, b"x")


def test_extensions_are_per_enclave(service: NsmService) -> None:
    one = SocketNsm(service.register_enclave("enc-ext-one", MEASUREMENTS, PCR3))
    two = SocketNsm(service.register_enclave("enc-ext-two", MEASUREMENTS, PCR3))
    one.extend_pcr(20, b"x")
    one.lock_pcr(20)
    assert two.describe_pcr(20) == client.PcrDescription(20, False, ZERO)


def test_get_random(service: NsmService) -> None:
    nsm = SocketNsm(service.register_enclave("enc-random", MEASUREMENTS, PCR3))
    draws = {nsm.get_random() for _ in range(4)}
    assert len(draws) == 4 and {len(draw) for draw in draws} == {256}


def test_identity_comes_from_the_socket(service: NsmService) -> None:
    other = EnclaveMeasurements(pcr0="01" * 48, pcr1="02" * 48, pcr2="03" * 48)
    first = service.register_enclave("enc-one", MEASUREMENTS, PCR3)
    second = service.register_enclave("enc-two", other, PCR3)
    assert parsed(SocketNsm(first).attestation()).pcr_hex(0) == MEASUREMENTS.pcr0
    assert parsed(SocketNsm(second).attestation()).pcr_hex(0) == other.pcr0


#: A host process that asks its NSM socket (argv[1]) for a document and prints it as hex.
_ASK_FOR_A_DOCUMENT = (
    "import sys\n"
    "from vault.enclave.nsm import SocketNsm\n"
    "sys.stdout.write(SocketNsm(sys.argv[1], timeout=20).attestation().hex())\n"
)


def _refused(path: Path) -> NsmError:
    with pytest.raises(NsmError) as refused:
        SocketNsm(path, timeout=5).attestation()
    return refused.value


def test_only_the_bound_process_gets_a_document(
    service: NsmService, pki: TestPki, caplog: pytest.LogCaptureFixture
) -> None:
    path = service.register_enclave("enc-bound", MEASUREMENTS, PCR3, bind_later=True)
    # The child connects at once; its request waits until the socket is bound to it.
    child = subprocess.Popen(
        [sys.executable, "-c", _ASK_FOR_A_DOCUMENT, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        service.bind_peer("enc-bound", ProcessTree.of(child.pid))
        output, _ = child.communicate(timeout=30)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 0
    document = bytes.fromhex(output)
    verified = verify_document(document, pki.root.certificate, now=now(), max_age=MAX_AGE)
    assert verified.pcrs[0].hex() == MEASUREMENTS.pcr0

    caplog.set_level(logging.WARNING, logger="emulator.nitro.nsm")
    refusal = _refused(path)
    assert refusal.code == "InvalidOperation"
    refusals = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert refusals and f"pid {os.getpid()} " in refusals[-1] and "enc-bound" in refusals[-1]


def test_a_registered_pid_admits_its_descendants_only(service: NsmService) -> None:
    mine = service.register_enclave("enc-mine", MEASUREMENTS, PCR3, pid=os.getppid())
    assert SocketNsm(mine).attestation()  # this process descends from its parent
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs = service.register_enclave("enc-theirs", MEASUREMENTS, PCR3, pid=stranger.pid)
        assert _refused(theirs).code == "InvalidOperation"
    finally:
        stranger.kill()
        stranger.wait()


def test_an_unbound_socket_answers_nobody(
    pki: TestPki, short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="emulator.nitro.nsm")
    with NsmService(pki, short_dir / "nsm", peer_wait=0.2) as service:
        path = service.register_enclave("enc-unbound", MEASUREMENTS, PCR3, bind_later=True)
        assert _refused(path).code == "InvalidOperation"
    assert any("nobody yet" in record.getMessage() for record in caplog.records)


def test_a_process_tree_rule_ends_with_its_process() -> None:
    me = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    assert ProcessTree.of(os.getppid()).admits(me)
    assert not ProcessTree.of(os.getpid()).admits(PeerCredentials(os.getppid(), 0, 0))
    # Another start time: the pid now names another process (reused), which admits nobody.
    parent = ProcessTree.of(os.getppid())
    assert not ProcessTree(parent.root, (parent.start_time or 0) + 1).admits(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    rule = ProcessTree.of(child.pid)
    child.wait()
    assert not rule.admits(PeerCredentials(child.pid, 0, 0))
    with pytest.raises(NsmServiceError):
        ProcessTree.of(child.pid)


def test_a_pid_namespace_rule_admits_that_namespace_only() -> None:
    me = PeerCredentials(os.getpid(), os.getuid(), os.getgid())
    own = procfs.pid_namespace(os.getpid())
    assert own is not None and own.startswith("pid:[")
    assert PidNamespace(own).admits(me)
    assert not PidNamespace("pid:[1]").admits(me)
    with pytest.raises(NsmServiceError, match="own PID namespace"):
        PidNamespace.of(os.getpid())


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare and root")
def test_a_process_in_the_bound_pid_namespace_gets_a_document(service: NsmService) -> None:
    """What the container runtime binds: a PID namespace of its own, not a process tree."""
    path = service.register_enclave("enc-container", MEASUREMENTS, PCR3, bind_later=True)
    outer = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--", sys.executable, "-c", _ASK_FOR_A_DOCUMENT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not procfs.children(outer.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        (inner,) = procfs.children(outer.pid)
        service.bind_peer("enc-container", PidNamespace.of(inner))
        output, _ = outer.communicate(timeout=30)
    finally:
        outer.kill()
        outer.wait()
    assert parsed(bytes.fromhex(output)).pcr_hex(0) == MEASUREMENTS.pcr0
    assert _refused(path).code == "InvalidOperation"


def test_registration_rules(service: NsmService) -> None:
    path = service.register_enclave("enc-rules", MEASUREMENTS, PCR3)
    with pytest.raises(NsmServiceError, match="already registered"):
        service.register_enclave("enc-rules", MEASUREMENTS, PCR3)
    for bad_id in ("", "../escape", "x" * 65, "white space"):
        with pytest.raises(NsmServiceError):
            service.register_enclave(bad_id, MEASUREMENTS, PCR3)
    with pytest.raises(NsmServiceError):
        service.register_enclave("enc-bad-pcr3", MEASUREMENTS, "ab")
    with pytest.raises(NsmServiceError, match="one of"):
        service.register_enclave("enc-both", MEASUREMENTS, PCR3, pid=os.getpid(), bind_later=True)
    with pytest.raises(NsmServiceError, match="already bound"):
        service.bind_peer("enc-rules", ProcessTree.of(os.getpid()))
    with pytest.raises(NsmServiceError, match="not registered"):
        service.bind_peer("enc-nobody", ProcessTree.of(os.getpid()))
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
