"""nsm-dockerfile: an enclave application, built from a Dockerfile, that reports what the NSM attests.

It needs nothing beyond the Python standard library (the image is Debian's ``python3`` and
this file): it talks to the Nitro Secure Module through the driver's own interface,
``open("/dev/nsm")`` and ``ioctl(NSM_IOCTL_RAW)``, with CBOR requests encoded here.

For each connection on vsock port 5020 it reads one JSON line, ``{"nonce": "<hex>"}``
(optional, at most 512 bytes), and answers one JSON line::

    {"pcr0": "<hex>", "pcr0_locked": true,         # DescribePCR(0)
     "document": "<base64 COSE_Sign1>",             # Attestation(nonce)
     "document_pcr0": "<hex>",                      # pcrs[0] of the document's payload
     "program_sha256": "<hex>"}                     # of this file, as the image holds it

or ``{"error": {"code": "..."}}``. It does not verify the document: that is the relying
party's job (the document carries its certificate chain to the AWS Nitro root).
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import hashlib
import json
import os
import socket
import struct
import sys
from typing import Any

LISTEN_PORT = 5020
DEVICE = "/dev/nsm"
MAX_NONCE = 512
MAX_REQUEST_LINE = 4096
#: The driver's bounds (linux drivers/misc/nsm.c).
REQUEST_MAX_SIZE = 0x1000
RESPONSE_MAX_SIZE = 0x3000
#: ``struct nsm_raw``: the request's {address, length}, then the response's.
RAW = struct.Struct("=QQQQ")
#: ``_IOWR(0x0A, 0, sizeof(struct nsm_raw))``.
NSM_IOCTL_RAW = (3 << 30) | (RAW.size << 16) | (0x0A << 8) | 0


class NsmError(Exception):
    """The NSM refused a request or answered something unexpected; ``code`` says which."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class CborError(ValueError):
    pass


# -- CBOR (RFC 8949): the subset the NSM speaks ------------------------------------------


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | info]) + value.to_bytes(size, "big")
    raise CborError("integer out of range")


def cbor_encode(value: Any) -> bytes:
    """Definite-length CBOR of None, bool, int, bytes, str, list and dict (keys in the given order)."""
    if value is None:
        return b"\xf6"
    if value is True:
        return b"\xf5"
    if value is False:
        return b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        encoded = value.encode("utf-8")
        return _head(3, len(encoded)) + encoded
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(cbor_encode(item) for item in value)
    if isinstance(value, dict):
        items = (cbor_encode(key) + cbor_encode(item) for key, item in value.items())
        return _head(5, len(value)) + b"".join(items)
    raise CborError(f"cannot encode {type(value).__name__}")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.offset:
            raise CborError("truncated")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def item(self, depth: int = 0) -> Any:
        if depth > 16:
            raise CborError("nested too deeply")
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            return self._simple(info)
        if info == 31 and major in (2, 3, 4, 5):
            # Hardware writes the document's payload map with indefinite length.
            return self._indefinite(major, depth)
        if info < 24:
            argument = info
        elif info <= 27:
            argument = int.from_bytes(self.take(1 << (info - 24)), "big")
        else:
            raise CborError("unsupported length")
        if major == 0:
            return argument
        if major == 1:
            return -1 - argument
        if major == 2:
            return self.take(argument)
        if major == 3:
            return self._text(self.take(argument))
        if major == 4:
            return [self.item(depth + 1) for _ in range(argument)]
        if major == 5:
            result: dict[Any, Any] = {}
            for _ in range(argument):
                self._entry(result, depth)
            return result
        # major 6, a tag (COSE_Sign1 may carry tag 18): its content.
        return self.item(depth + 1)

    def _at_break(self) -> bool:
        if self.offset >= len(self.data):
            raise CborError("truncated")
        if self.data[self.offset] == 0xFF:
            self.offset += 1
            return True
        return False

    def _indefinite(self, major: int, depth: int) -> Any:
        if major in (2, 3):
            chunks = []
            while not self._at_break():
                # Each chunk is a definite-length string of the same type.
                if self.data[self.offset] >> 5 != major or self.data[self.offset] & 0x1F == 31:
                    raise CborError("a bad chunk in an indefinite-length string")
                chunk = self.item(depth + 1)
                chunks.append(chunk.encode("utf-8") if major == 3 else chunk)
            joined = b"".join(chunks)
            return self._text(joined) if major == 3 else joined
        if major == 4:
            items = []
            while not self._at_break():
                items.append(self.item(depth + 1))
            return items
        result: dict[Any, Any] = {}
        while not self._at_break():
            self._entry(result, depth)
        return result

    def _entry(self, result: dict[Any, Any], depth: int) -> None:
        key = self.item(depth + 1)
        if isinstance(key, (list, dict)):
            raise CborError("a map key that is an array or a map")
        result[key] = self.item(depth + 1)

    @staticmethod
    def _text(data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise CborError("text is not UTF-8") from None

    def _simple(self, info: int) -> Any:
        if info == 20:
            return False
        if info == 21:
            return True
        if info in (22, 23):
            return None
        if info == 25:
            return struct.unpack(">e", self.take(2))[0]
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise CborError("unsupported simple value")


def cbor_decode(data: bytes) -> Any:
    """The one CBOR item that is all of ``data``."""
    reader = _Reader(data)
    value = reader.item()
    if reader.offset != len(data):
        raise CborError("trailing bytes")
    return value


# -- the NSM driver ------------------------------------------------------------------------


def nsm_exchange(request: bytes, device: str = DEVICE) -> bytes:
    """One request through ``ioctl(NSM_IOCTL_RAW)``; the response's bytes."""
    if len(request) > REQUEST_MAX_SIZE:
        raise NsmError("InputTooLarge")
    request_buffer = ctypes.create_string_buffer(request, len(request))
    response_buffer = ctypes.create_string_buffer(RESPONSE_MAX_SIZE)
    raw = bytearray(
        RAW.pack(
            ctypes.addressof(request_buffer),
            len(request),
            ctypes.addressof(response_buffer),
            RESPONSE_MAX_SIZE,
        )
    )
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, NSM_IOCTL_RAW, raw, True)
    finally:
        os.close(fd)
    # The driver writes the response's length into the struct.
    length = RAW.unpack(raw)[3]
    if not 0 < length <= RESPONSE_MAX_SIZE:
        raise NsmError("InvalidResponse")
    return response_buffer.raw[:length]


def nsm_call(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body of the NSM's ``{operation: {...}}`` answer; :class:`NsmError` on ``{"Error": code}``."""
    response = cbor_decode(nsm_exchange(cbor_encode({operation: body})))
    if isinstance(response, dict) and "Error" in response:
        raise NsmError(str(response["Error"]))
    if not isinstance(response, dict) or not isinstance(response.get(operation), dict):
        raise NsmError("InvalidResponse")
    answer: dict[str, Any] = response[operation]
    return answer


def describe_pcr(index: int) -> tuple[bytes, bool]:
    body = nsm_call("DescribePCR", {"index": index})
    value, locked = body.get("data"), body.get("lock")
    if not isinstance(value, bytes) or not isinstance(locked, bool):
        raise NsmError("InvalidResponse")
    return value, locked


def attestation(nonce: bytes | None) -> bytes:
    # Field order and nulls as the NSM's own (serde) encoding of the request.
    body = nsm_call("Attestation", {"user_data": None, "nonce": nonce, "public_key": None})
    document = body.get("document")
    if not isinstance(document, bytes) or not document:
        raise NsmError("InvalidResponse")
    return document


def document_pcr0(document: bytes) -> bytes:
    """PCR0 as the document's payload states it (COSE_Sign1: protected, unprotected, payload, signature)."""
    sign1 = cbor_decode(document)
    if not isinstance(sign1, list) or len(sign1) != 4 or not isinstance(sign1[2], bytes):
        raise NsmError("InvalidDocument")
    payload = cbor_decode(sign1[2])
    pcrs = payload.get("pcrs") if isinstance(payload, dict) else None
    if not isinstance(pcrs, dict) or not isinstance(pcrs.get(0), bytes):
        raise NsmError("InvalidDocument")
    value: bytes = pcrs[0]
    return value


# -- serving --------------------------------------------------------------------------------


def program_digest() -> str:
    with open(__file__, "rb") as program:
        return hashlib.sha256(program.read()).hexdigest()


def parse_nonce(line: bytes) -> bytes | None:
    if not line.strip():
        return None
    request = json.loads(line)
    if not isinstance(request, dict):
        raise ValueError("the request is not a JSON object")
    nonce = request.get("nonce")
    if nonce is None:
        return None
    value = bytes.fromhex(str(nonce))
    if len(value) > MAX_NONCE:
        raise ValueError("the nonce is too long")
    return value


def answer(line: bytes) -> dict[str, Any]:
    try:
        nonce = parse_nonce(line)
    except ValueError:
        return {"error": {"code": "BadRequest"}}
    try:
        pcr0, locked = describe_pcr(0)
        document = attestation(nonce)
        return {
            "pcr0": pcr0.hex(),
            "pcr0_locked": locked,
            "document": base64.b64encode(document).decode(),
            "document_pcr0": document_pcr0(document).hex(),
            "program_sha256": program_digest(),
        }
    except NsmError as exc:
        return {"error": {"code": exc.code}}
    except (OSError, CborError) as exc:
        return {"error": {"code": type(exc).__name__}}


def read_line(connection: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST_LINE:
        chunk = connection.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def serve(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(30)
            try:
                reply = answer(read_line(connection))
                print(f"answered: {sorted(reply)}", flush=True)
                connection.sendall(json.dumps(reply).encode() + b"\n")
            except OSError as exc:
                print(f"connection failed: {type(exc).__name__}", flush=True)


def main() -> int:
    listener = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    listener.bind((socket.VMADDR_CID_ANY, LISTEN_PORT))
    listener.listen(8)
    print(f"listening on vsock port {LISTEN_PORT}", flush=True)
    serve(listener)
    return 0


if __name__ == "__main__":
    sys.exit(main())
