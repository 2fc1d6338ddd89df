"""The Nitro Secure Module (NSM): where the enclave gets its signed attestation documents.

The NSM speaks CBOR-encoded requests and responses, shaped as serde's externally
tagged enums in ``aws-nitro-enclaves-nsm-api`` (``src/api/mod.rs``); variants without
fields are bare text strings::

    request   {"Attestation": {"user_data": b|null, "nonce": b|null, "public_key": b|null}}
              {"DescribePCR": {"index": n}}
              {"ExtendPCR": {"index": n, "data": b}}
              {"LockPCR": {"index": n}}
              {"LockPCRs": {"range": n}}                 locks PCRs [0, n)
              "DescribeNSM"
              "GetRandom"
    response  {"Attestation": {"document": b}}        a COSE_Sign1 attestation document
              {"DescribePCR": {"lock": bool, "data": b}}
              {"ExtendPCR": {"data": b}}                 the PCR's new value
              "LockPCR" / "LockPCRs"
              {"DescribeNSM": {"version_major": n, "version_minor": n, "version_patch": n,
                               "module_id": text, "max_pcrs": n, "locked_pcrs": [n, ...],
                               "digest": "SHA384"}}
              {"GetRandom": {"random": b}}
              {"Error": "InvalidArgument" | ...}       an ``ErrorCode`` name

Two ways to reach it, chosen by configuration (``VAULT_NSM``), never by asking where
the code runs:

* :class:`DeviceNsm` (``/dev/nsm``, the default): the NSM driver's raw ioctl. The
  driver takes ``struct nsm_raw { struct nsm_iovec request, response; }`` (two
  ``{u64 addr, u64 len}`` pairs) with ``NSM_IOCTL_RAW = _IOWR(0x0A, 0, 32)``, reads the
  request buffer, fills the response buffer and writes the response length back.
* :class:`SocketNsm` (``uds:<path>``): the same CBOR messages, each in one frame of the
  vsock framing (8-byte little-endian length), over a Unix socket that the emulator's
  NSM service gave this enclave.

No request sets a PCR: the module fills PCRs 0-15 in from what it measured and locks
them, so the enclave cannot choose what it attests to; it may only extend and lock the
others (16-31).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cbor2

from vault.common.framing import FramingError, read_frame, write_frame

DEVICE_PATH = "/dev/nsm"
UDS_PREFIX = "uds:"
NSM_ENV = "VAULT_NSM"
#: Limits of the NSM driver (include/uapi/linux/nsm.h).
REQUEST_MAX_SIZE = 0x1000
RESPONSE_MAX_SIZE = 0x3000
#: Field limits of the attestation request. The CDDL of attestation_process.md (2.2) allows
#: 1024 bytes for each; its section 3.2.2.2 says 512 for user_data and nonce, but the NSM
#: takes 1024 (AWS's nsm-check asks for that much) and real documents carry 1024.
MAX_PUBLIC_KEY = 1024
MAX_USER_DATA = 1024
MAX_NONCE = 1024
#: PCR indices and ranges are u16 on the wire.
MAX_PCR_INDEX = 0xFFFF

_NSM_MAGIC = 0x0A
_RAW = struct.Struct("=QQQQ")  # struct nsm_raw: request {addr, len}, response {addr, len}
_IOC_WRITE = 1
_IOC_READ = 2


def _iowr(magic: int, number: int, size: int) -> int:
    """Linux ``_IOWR`` for the asm-generic layout (x86-64 and arm64, where enclaves run)."""
    return ((_IOC_READ | _IOC_WRITE) << 30) | (size << 16) | (magic << 8) | number


NSM_IOCTL_RAW = _iowr(_NSM_MAGIC, 0, _RAW.size)


class NsmError(Exception):
    """The NSM refused or could not be reached; ``code`` is its ``ErrorCode`` name when it answered."""

    def __init__(self, message: str, code: str = "InternalError") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PcrDescription:
    index: int
    locked: bool
    value: bytes


@dataclass(frozen=True)
class NsmDescription:
    """What ``DescribeNSM`` answers."""

    version: tuple[int, int, int]
    module_id: str
    max_pcrs: int
    locked_pcrs: frozenset[int]
    digest: str


class Nsm(Protocol):
    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        """Return a COSE_Sign1 attestation document binding the given values."""
        ...

    def describe_pcr(self, index: int) -> PcrDescription: ...


def _check_size(name: str, value: bytes | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise NsmError(f"{name} is {len(value)} bytes, the NSM accepts at most {limit}", "InputTooLarge")


def encode_attestation_request(
    public_key: bytes | None, user_data: bytes | None, nonce: bytes | None
) -> bytes:
    _check_size("public_key", public_key, MAX_PUBLIC_KEY)
    _check_size("user_data", user_data, MAX_USER_DATA)
    _check_size("nonce", nonce, MAX_NONCE)
    # Field order follows the Rust enum; absent values are CBOR null, as serde writes None.
    body = {"user_data": user_data, "nonce": nonce, "public_key": public_key}
    return cbor2.dumps({"Attestation": body})


def _check_index(index: int, what: str = "PCR index") -> None:
    if not 0 <= index <= MAX_PCR_INDEX:
        raise NsmError(f"{what} {index} is out of range", "InvalidIndex")


def encode_describe_pcr_request(index: int) -> bytes:
    _check_index(index)
    return cbor2.dumps({"DescribePCR": {"index": index}})


def encode_extend_pcr_request(index: int, data: bytes) -> bytes:
    _check_index(index)
    return cbor2.dumps({"ExtendPCR": {"index": index, "data": data}})


def encode_lock_pcr_request(index: int) -> bytes:
    _check_index(index)
    return cbor2.dumps({"LockPCR": {"index": index}})


def encode_lock_pcrs_request(count: int) -> bytes:
    _check_index(count, "PCR range")
    return cbor2.dumps({"LockPCRs": {"range": count}})


def encode_describe_nsm_request() -> bytes:
    return cbor2.dumps("DescribeNSM")


def encode_get_random_request() -> bytes:
    return cbor2.dumps("GetRandom")


def _response(data: bytes, operation: str) -> Any:
    try:
        response = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError) as exc:
        raise NsmError(f"the NSM response is not CBOR: {type(exc).__name__}") from None
    if isinstance(response, Mapping) and len(response) == 1 and "Error" in response:
        code = str(response["Error"])
        raise NsmError(f"the NSM refused the {operation} request: {code}", code)
    return response


def _unexpected(operation: str) -> NsmError:
    return NsmError(f"the NSM sent an unexpected response to {operation}", "InvalidResponse")


def decode_response(data: bytes, operation: str) -> Mapping[str, Any]:
    """Return the body of a successful ``operation`` response; raise :class:`NsmError` otherwise."""
    response = _response(data, operation)
    if isinstance(response, Mapping) and len(response) == 1:
        body = response.get(operation)
        if isinstance(body, Mapping):
            return body
    raise _unexpected(operation)


def decode_unit_response(data: bytes, operation: str) -> None:
    """Check a successful response without fields (``"LockPCR"``, ``"LockPCRs"``)."""
    if _response(data, operation) != operation:
        raise _unexpected(operation)


def decode_attestation_response(data: bytes) -> bytes:
    document = decode_response(data, "Attestation").get("document")
    if not isinstance(document, bytes) or not document:
        raise NsmError("the NSM attestation response has no document", "InvalidResponse")
    return document


def decode_describe_pcr_response(data: bytes, index: int) -> PcrDescription:
    body = decode_response(data, "DescribePCR")
    value, locked = body.get("data"), body.get("lock")
    if not isinstance(value, bytes) or not isinstance(locked, bool):
        raise NsmError("the NSM DescribePCR response is malformed", "InvalidResponse")
    return PcrDescription(index=index, locked=locked, value=value)


def _bytes_field(data: bytes, operation: str, name: str) -> bytes:
    value = decode_response(data, operation).get(name)
    if not isinstance(value, bytes) or not value:
        raise NsmError(f"the NSM {operation} response has no {name}", "InvalidResponse")
    return value


def decode_extend_pcr_response(data: bytes) -> bytes:
    return _bytes_field(data, "ExtendPCR", "data")


def decode_get_random_response(data: bytes) -> bytes:
    return _bytes_field(data, "GetRandom", "random")


def _u16(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PCR_INDEX:
        return value
    raise NsmError("the NSM DescribeNSM response is malformed", "InvalidResponse")


def decode_describe_nsm_response(data: bytes) -> NsmDescription:
    body = decode_response(data, "DescribeNSM")
    locked, module_id, digest = body.get("locked_pcrs"), body.get("module_id"), body.get("digest")
    if not isinstance(locked, list) or not isinstance(module_id, str) or not isinstance(digest, str):
        raise NsmError("the NSM DescribeNSM response is malformed", "InvalidResponse")
    major, minor, patch = (_u16(body.get(f"version_{part}")) for part in ("major", "minor", "patch"))
    return NsmDescription(
        version=(major, minor, patch),
        module_id=module_id,
        max_pcrs=_u16(body.get("max_pcrs")),
        locked_pcrs=frozenset(_u16(index) for index in locked),
        digest=digest,
    )


class _Requester(abc.ABC):
    """The NSM operations over any transport that carries one request and one response."""

    @abc.abstractmethod
    def exchange(self, request: bytes) -> bytes:
        """Send one encoded request, return the encoded response."""

    def attestation(
        self, public_key: bytes | None = None, user_data: bytes | None = None, nonce: bytes | None = None
    ) -> bytes:
        request = encode_attestation_request(public_key, user_data, nonce)
        return decode_attestation_response(self.exchange(request))

    def describe_pcr(self, index: int) -> PcrDescription:
        return decode_describe_pcr_response(self.exchange(encode_describe_pcr_request(index)), index)

    def extend_pcr(self, index: int, data: bytes) -> bytes:
        """Extend PCR ``index`` (16-31; 0-15 are locked) with ``data``; return its new value."""
        return decode_extend_pcr_response(self.exchange(encode_extend_pcr_request(index, data)))

    def lock_pcr(self, index: int) -> None:
        decode_unit_response(self.exchange(encode_lock_pcr_request(index)), "LockPCR")

    def lock_pcrs(self, count: int) -> None:
        """Lock PCRs ``[0, count)``."""
        decode_unit_response(self.exchange(encode_lock_pcrs_request(count)), "LockPCRs")

    def describe_nsm(self) -> NsmDescription:
        return decode_describe_nsm_response(self.exchange(encode_describe_nsm_request()))

    def get_random(self) -> bytes:
        return decode_get_random_response(self.exchange(encode_get_random_request()))


class DeviceNsm(_Requester):
    """The NSM driver's character device inside a Nitro Enclave."""

    def __init__(self, path: str = DEVICE_PATH) -> None:
        self.path = path

    def exchange(self, request: bytes) -> bytes:
        if len(request) > REQUEST_MAX_SIZE:
            raise NsmError("the NSM request is too large", "InputTooLarge")
        request_buffer = ctypes.create_string_buffer(request, len(request))
        response_buffer = ctypes.create_string_buffer(RESPONSE_MAX_SIZE)
        raw = bytearray(
            _RAW.pack(
                ctypes.addressof(request_buffer),
                len(request),
                ctypes.addressof(response_buffer),
                RESPONSE_MAX_SIZE,
            )
        )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise NsmError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.ioctl(fd, NSM_IOCTL_RAW, raw, True)
        except OSError as exc:
            raise NsmError(f"the NSM ioctl failed: {exc.strerror}") from None
        finally:
            os.close(fd)
        return response_from_raw(bytes(raw), response_buffer.raw)


def response_from_raw(raw: bytes, response_buffer: bytes) -> bytes:
    """The response bytes the driver reported in ``struct nsm_raw`` after the ioctl."""
    _, _, _, length = _RAW.unpack(raw)
    if length == 0 or length > len(response_buffer):
        raise NsmError(f"the NSM reported an invalid response length {length}", "InvalidResponse")
    return response_buffer[:length]


class SocketNsm(_Requester):
    """The emulator's NSM service, one Unix socket per enclave."""

    def __init__(self, path: str | Path, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    def exchange(self, request: bytes) -> bytes:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
            write_frame(sock, request)
            return read_frame(sock)
        except (OSError, FramingError) as exc:
            raise NsmError(f"cannot reach the NSM at {self.path}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                sock.close()


def nsm_from_env(environ: Mapping[str, str] | None = None) -> Nsm:
    """``VAULT_NSM``: ``/dev/nsm`` (default) or another device path, or ``uds:<socket path>``."""
    env = os.environ if environ is None else environ
    value = env.get(NSM_ENV, DEVICE_PATH).strip()
    if value.startswith(UDS_PREFIX):
        path = value[len(UDS_PREFIX) :]
        if not path:
            raise ValueError(f"{NSM_ENV}=uds: needs a socket path")
        return SocketNsm(path)
    if not value.startswith("/"):
        raise ValueError(f"{NSM_ENV} must be a device path or uds:<path>, not {value!r}")
    return DeviceNsm(value)
