"""The emulated Nitro Secure Module: one Unix socket per launched enclave.

The emulator registers each enclave it launches with the measurements of the image it
launched, the PCR3 of the simulated instance role and the debug-mode switch, and gets
back a socket path to hand to that enclave (``VAULT_NSM=uds:<path>``). Requests and
responses are the NSM's own CBOR messages (:mod:`vault.enclave.nsm`), one per frame of
the vsock framing.

The enclave never states who it is and never supplies a PCR: identity comes from which
socket it connected to, and when the registration names a process id, the caller's
``SO_PEERCRED`` process must be that process or one of its descendants. PCR values are
fixed at registration:

====  =====================================================================
PCR0  image measurement (``measure_image``)
PCR1  bootstrap measurement
PCR2  application measurement
PCR3  SHA-384(48 zero bytes || instance role ARN), given by the caller
PCR4  SHA-384(48 zero bytes || instance id)
PCR8  signing certificate measurement (zeros for an unsigned image)
====  =====================================================================

All other PCRs of 0..15 are zeros, and in debug mode all of them are, as on hardware.
Documents are signed with a per-enclave leaf certificate from the test PKI, renewed
before it expires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2

from emulator.host import procfs
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.pki import BACKDATE, LEAF_LIFETIME, CertifiedKey, TestPki
from vault.common.framing import FramingError, read_frame, write_frame
from vault.enclave.nsm import MAX_NONCE, MAX_PUBLIC_KEY, MAX_USER_DATA, REQUEST_MAX_SIZE
from vault.infra.key_policy import EnclaveMeasurements

PCR_COUNT = 16
PCR_SIZE = 48
DEFAULT_INSTANCE_ID = "i-0e1a2b3c4d5e6f708"
MAX_REQUESTS_PER_CONNECTION = 64
#: Concurrent connections per enclave; more are closed at once.
MAX_CONNECTIONS = 16
REQUEST_TIMEOUT = 10.0
#: A leaf this close to expiry is replaced before it signs again.
LEAF_RENEWAL = dt.timedelta(minutes=10)
_ENCLAVE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_PROCESS_DEPTH = 64
_PEERCRED = struct.Struct("3i")
_ZERO = b"\x00" * PCR_SIZE
_log = logging.getLogger(__name__)


class NsmServiceError(RuntimeError):
    """Registration refused (bad id, already registered, socket problems)."""


def measurement_of(data: bytes) -> bytes:
    """``SHA-384(48 zero bytes || data)``, the PCR3/PCR4 construction."""
    return hashlib.sha384(_ZERO + data).digest()


def enclave_pcrs(
    measurements: EnclaveMeasurements, pcr3: str, *, instance_id: str, debug_mode: bool
) -> dict[int, bytes]:
    pcrs = dict.fromkeys(range(PCR_COUNT), _ZERO)
    if debug_mode:
        return pcrs
    pcrs[0] = bytes.fromhex(measurements.pcr0)
    pcrs[1] = bytes.fromhex(measurements.pcr1)
    pcrs[2] = bytes.fromhex(measurements.pcr2)
    pcrs[3] = bytes.fromhex(pcr3)
    pcrs[4] = measurement_of(instance_id.encode("utf-8"))
    if measurements.pcr8 is not None:
        pcrs[8] = bytes.fromhex(measurements.pcr8)
    for index, value in pcrs.items():
        if len(value) != PCR_SIZE:
            raise NsmServiceError(f"PCR{index} must be {PCR_SIZE} bytes")
    return pcrs


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_same_or_descendant(pid: int, ancestor: int) -> bool:
    current: int | None = pid
    for _ in range(_MAX_PROCESS_DEPTH):
        if current is None or current <= 0:
            return False
        if current == ancestor:
            return True
        if current == 1:
            return False
        found = procfs.stat(current)
        current = found.ppid if found is not None else None
    return False


def peer_pid(sock: socket.socket) -> int:
    pid, _, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return int(pid)


@dataclass
class _Enclave:
    enclave_id: str
    module_id: str
    pcrs: dict[int, bytes]
    pid: int | None
    socket_path: Path
    signer: CertifiedKey = field(repr=False)
    listener: socket.socket | None = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)


class _Refusal(Exception):
    """A request the NSM answers with ``{"Error": code}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _error(code: str) -> bytes:
    return cbor2.dumps({"Error": code})


def _optional_bytes(body: Mapping[Any, Any], name: str, limit: int) -> bytes | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise _Refusal("InvalidArgument")
    if len(value) > limit:
        raise _Refusal("InputTooLarge")
    return value


class NsmService:
    """Signs attestation documents for registered enclaves; see the module docstring."""

    def __init__(
        self,
        pki: TestPki,
        socket_dir: Path,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        leaf_lifetime: dt.timedelta = LEAF_LIFETIME,
        socket_mode: int = 0o600,
    ) -> None:
        self.pki = pki
        self.socket_dir = Path(socket_dir)
        self.clock = clock
        self.leaf_lifetime = leaf_lifetime
        self.socket_mode = socket_mode
        self._enclaves: dict[str, _Enclave] = {}
        self._lock = threading.Lock()

    def register_enclave(
        self,
        enclave_id: str,
        measurements: EnclaveMeasurements,
        pcr3: str,
        debug_mode: bool = False,
        *,
        pid: int | None = None,
        instance_id: str = DEFAULT_INSTANCE_ID,
    ) -> Path:
        """Start the enclave's NSM socket and return its path."""
        if not _ENCLAVE_ID.match(enclave_id):
            raise NsmServiceError("enclave ids are 1-64 characters of letters, digits, '_', '.' and '-'")
        try:
            pcrs = enclave_pcrs(measurements, pcr3, instance_id=instance_id, debug_mode=debug_mode)
        except ValueError as exc:
            raise NsmServiceError(f"invalid PCR value: {exc}") from None
        # Nitro names an enclave "<instance id>-enc<hex>", and that name is the document's module_id.
        module_id = (
            enclave_id
            if enclave_id.startswith(f"{instance_id}-enc")
            else f"{instance_id}-enc{hashlib.sha256(enclave_id.encode()).hexdigest()[:16]}"
        )
        path = self.socket_dir / f"nsm-{enclave_id}.sock"
        with self._lock:
            if enclave_id in self._enclaves:
                raise NsmServiceError(f"enclave {enclave_id} is already registered")
            enclave = _Enclave(
                enclave_id=enclave_id,
                module_id=module_id,
                pcrs=pcrs,
                pid=pid,
                socket_path=path,
                signer=self._issue_leaf(module_id),
            )
            self._start(enclave)
            self._enclaves[enclave_id] = enclave
        _log.info(
            "nsm enclave registered",
            extra={"fields": {"enclave_id": enclave_id, "debug_mode": debug_mode, "pcr0": pcrs[0].hex()}},
        )
        return path

    def unregister_enclave(self, enclave_id: str) -> None:
        with self._lock:
            enclave = self._enclaves.pop(enclave_id, None)
        if enclave is not None:
            self._stop(enclave)

    def start(self) -> None:
        """Prepare the socket directory; each enclave's socket starts when it is registered."""
        self.socket_dir.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Close every enclave's socket."""
        with self._lock:
            enclaves = list(self._enclaves.values())
            self._enclaves.clear()
        for enclave in enclaves:
            self._stop(enclave)

    close = stop

    def __enter__(self) -> NsmService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pcrs(self, enclave_id: str) -> dict[int, bytes]:
        with self._lock:
            return dict(self._enclaves[enclave_id].pcrs)

    def _issue_leaf(self, module_id: str) -> CertifiedKey:
        return self.pki.issue_leaf(module_id, not_before=self.clock() - BACKDATE, lifetime=self.leaf_lifetime)

    def _signer(self, enclave: _Enclave) -> CertifiedKey:
        if enclave.signer.certificate.not_valid_after_utc - self.clock() < LEAF_RENEWAL:
            enclave.signer = self._issue_leaf(enclave.module_id)
        return enclave.signer

    def attestation(
        self,
        enclave_id: str,
        public_key: bytes | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
    ) -> bytes:
        """A signed document for ``enclave_id`` (what its socket answers to ``Attestation``)."""
        with self._lock:
            enclave = self._enclaves[enclave_id]
            signer = self._signer(enclave)
        document = AttestationDocument(
            module_id=enclave.module_id,
            timestamp_ms=int(self.clock().timestamp() * 1000),
            pcrs=enclave.pcrs,
            certificate=signer.der,
            cabundle=tuple(self.pki.cabundle),
            public_key=public_key,
            user_data=user_data,
            nonce=nonce,
        )
        return document.sign(signer.key)

    def handle(self, enclave_id: str, request: bytes) -> bytes:
        """Answer one CBOR request from ``enclave_id`` with one CBOR response."""
        if len(request) > REQUEST_MAX_SIZE:
            return _error("InputTooLarge")
        try:
            message = cbor2.loads(request)
        except (cbor2.CBORDecodeError, ValueError, EOFError, RecursionError):
            return _error("InvalidArgument")
        if isinstance(message, str):
            message = {message: None}  # unit variants (DescribeNSM, GetRandom) are bare strings
        if not isinstance(message, dict) or len(message) != 1:
            return _error("InvalidArgument")
        ((operation, body),) = message.items()
        try:
            if operation == "Attestation" and isinstance(body, dict):
                document = self.attestation(
                    enclave_id,
                    public_key=_optional_bytes(body, "public_key", MAX_PUBLIC_KEY),
                    user_data=_optional_bytes(body, "user_data", MAX_USER_DATA),
                    nonce=_optional_bytes(body, "nonce", MAX_NONCE),
                )
                return cbor2.dumps({"Attestation": {"document": document}})
            if operation == "DescribePCR" and isinstance(body, dict):
                index = body.get("index")
                pcrs = self.pcrs(enclave_id)
                if not isinstance(index, int) or index not in pcrs:
                    return _error("InvalidIndex")
                return cbor2.dumps({"DescribePCR": {"lock": True, "data": pcrs[index]}})
            if operation == "DescribeNSM":
                return cbor2.dumps({"DescribeNSM": self._describe(enclave_id)})
        except _Refusal as refusal:
            return _error(refusal.code)
        return _error("InvalidOperation")

    def _describe(self, enclave_id: str) -> dict[str, Any]:
        with self._lock:
            enclave = self._enclaves[enclave_id]
        return {
            "version_major": 1,
            "version_minor": 0,
            "version_patch": 0,
            "module_id": enclave.module_id,
            "max_pcrs": 32,
            "locked_pcrs": list(range(PCR_COUNT)),
            "digest": "SHA384",
        }

    def _authorised(self, enclave: _Enclave, sock: socket.socket) -> bool:
        if enclave.pid is None:
            return True
        try:
            return is_same_or_descendant(peer_pid(sock), enclave.pid)
        except OSError:
            return False

    def _serve_connection(self, enclave: _Enclave, sock: socket.socket) -> None:
        with sock:
            if not self._authorised(enclave, sock):
                _log.warning("nsm caller refused", extra={"fields": {"enclave_id": enclave.enclave_id}})
                return
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    request = read_frame(sock, deadline=time.monotonic() + REQUEST_TIMEOUT)
                    write_frame(sock, self.handle(enclave.enclave_id, request))
                except (FramingError, KeyError):
                    return  # the peer left, or the enclave was unregistered meanwhile

    def _accept_loop(
        self, enclave: _Enclave, listener: socket.socket, slots: threading.BoundedSemaphore
    ) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return  # the listener was shut down
            if not slots.acquire(blocking=False):
                sock.close()
                continue

            def serve(sock: socket.socket = sock) -> None:
                try:
                    self._serve_connection(enclave, sock)
                finally:
                    slots.release()

            threading.Thread(target=serve, name=f"nsm-{enclave.enclave_id}-conn", daemon=True).start()

    def _start(self, enclave: _Enclave) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            enclave.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(enclave.socket_path))
            os.chmod(enclave.socket_path, self.socket_mode)
            listener.listen(MAX_CONNECTIONS)
        except OSError as exc:
            listener.close()
            raise NsmServiceError(f"cannot listen on {enclave.socket_path}: {exc}") from None
        thread = threading.Thread(
            target=self._accept_loop,
            args=(enclave, listener, threading.BoundedSemaphore(MAX_CONNECTIONS)),
            name=f"nsm-{enclave.enclave_id}",
            daemon=True,
        )
        thread.start()
        enclave.listener, enclave.thread = listener, thread

    def _stop(self, enclave: _Enclave) -> None:
        if enclave.listener is not None:
            # shutdown() wakes the blocked accept() at once (Linux), unlike close().
            with contextlib.suppress(OSError):
                enclave.listener.shutdown(socket.SHUT_RDWR)
            enclave.listener.close()
        if enclave.thread is not None:
            enclave.thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            enclave.socket_path.unlink()
