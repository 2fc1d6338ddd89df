"""The emulated Nitro Secure Module: one Unix socket per launched enclave.

The emulator registers each enclave it launches with the measurements of the image it
launched, the PCR3 of the simulated instance role and the debug-mode switch, and gets
back a socket path to hand to that enclave (``VAULT_NSM=uds:<path>``). Requests and
responses are the NSM's own CBOR messages (:mod:`vault.enclave.nsm`), one per frame of
the vsock framing.

The enclave never states who it is and never supplies a PCR: identity comes from which
socket it connected to, and from who connected. A registration binds the socket to a
peer rule checked against the caller's ``SO_PEERCRED`` (pid, uid, gid):
:class:`ProcessTree` (the launched sandbox's process and its descendants, the namespace
runtime) or :class:`PidNamespace` (any process in the container's PID namespace). The
emulator registers before it launches (the socket path goes into the enclave's
environment) with ``bind_later=True`` and binds the rule once the sandbox has a process;
a connection in between waits for the binding. Any caller the rule does not admit gets
``InvalidOperation`` and the NSM logs its pid. A registration without a rule (in-process
tests and tools) admits every local caller. PCR values are fixed at registration:

====  =====================================================================
PCR0  image measurement (``measure_image``)
PCR1  bootstrap measurement
PCR2  application measurement
PCR3  SHA-384(48 zero bytes || instance role ARN), given by the caller
PCR4  SHA-384(48 zero bytes || instance id)
PCR8  signing certificate measurement (zeros for an unsigned image)
====  =====================================================================

All other PCRs of 0..15 are zeros. In debug mode PCR0, 1, 2 and 8 are zeros while PCR3
and PCR4 keep their values, as on hardware (real debug-mode documents show exactly that).
PCRs 0..15 are locked from the start; 16..31 start as zeros and unlocked, and the
enclave may extend (``SHA-384(old || data)``) and lock them. A document carries the
locked PCRs. Requests are answered as the real module answers them:

===============  ===================================================================
Attestation      ``{"Attestation": {"document": ...}}``, signed as in :mod:`.attestation`
DescribePCR      ``{"lock", "data"}``; an index of 32 or more: ``InvalidIndex``
ExtendPCR        ``{"data": new value}``; a locked PCR: ``ReadOnlyIndex``
LockPCR          ``"LockPCR"``; an already locked PCR (all of 0..15): ``ReadOnlyIndex``
LockPCRs         ``"LockPCRs"`` after locking ``[0, range)``; a range over 32: ``InvalidIndex``
DescribeNSM      version 1.0.0, the module id, ``max_pcrs`` 32, the locked PCRs, ``"SHA384"``
GetRandom        ``{"random": 256 bytes}``
===============  ===================================================================

A request that is not CBOR or has malformed fields gets ``InvalidArgument``, an unknown
one ``InvalidOperation``. Documents are signed with a per-enclave leaf certificate from
the test PKI, under the instance's CA certificate, renewed before it expires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2

from emulator.faults.hooks import FaultHooks
from emulator.host import procfs
from emulator.nitro.attestation import AttestationDocument
from emulator.nitro.pki import BACKDATE, DEFAULT_INSTANCE_ID, LEAF_LIFETIME, EnclaveSigner, TestPki
from vault.common.framing import FramingError, read_frame, write_frame
from vault.enclave.nsm import MAX_NONCE, MAX_PCR_INDEX, MAX_PUBLIC_KEY, MAX_USER_DATA, REQUEST_MAX_SIZE
from vault.infra.key_policy import EnclaveMeasurements

#: PCRs 0..15 are measured at launch and locked; the NSM has 32.
PCR_COUNT = 16
MAX_PCRS = 32
PCR_SIZE = 48
#: PCRs that debug mode zeroes (PCR3 and PCR4 keep their values).
DEBUG_ZEROED = (0, 1, 2, 8)
NSM_VERSION = (1, 0, 0)
RANDOM_BYTES = 256
MAX_REQUESTS_PER_CONNECTION = 64
#: Concurrent connections per enclave; more are closed at once.
MAX_CONNECTIONS = 16
REQUEST_TIMEOUT = 10.0
#: A leaf this close to expiry is replaced before it signs again.
LEAF_RENEWAL = dt.timedelta(minutes=10)
_ENCLAVE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MAX_PROCESS_DEPTH = 64
#: How long a connection waits for a ``bind_later`` registration to be bound to its process.
PEER_WAIT = 15.0
#: How long a refused caller has to send the request its refusal answers (it holds a slot meanwhile).
REFUSAL_TIMEOUT = 2.0
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
    if debug_mode:
        pcrs.update(dict.fromkeys(DEBUG_ZEROED, _ZERO))
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


@dataclass(frozen=True)
class PeerCredentials:
    """``SO_PEERCRED`` of a Unix socket: the process that connected, as the kernel saw it."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return PeerCredentials(int(pid), int(uid), int(gid))


class PeerRule(Protocol):
    """Which callers of an enclave's socket are that enclave."""

    def admits(self, peer: PeerCredentials) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ProcessTree:
    """``root`` and its descendants, while ``root`` is the process it was when the rule was made.

    The start time tells a reused pid apart: a sandbox that ended and whose pid went to
    another process admits nobody.
    """

    root: int
    start_time: int | None

    @classmethod
    def of(cls, pid: int) -> ProcessTree:
        started = procfs.start_time(pid)
        if pid <= 0 or started is None:
            raise NsmServiceError(f"process {pid} does not exist")
        return cls(pid, started)

    def admits(self, peer: PeerCredentials) -> bool:
        if procfs.start_time(self.root) != self.start_time:
            return False
        return is_same_or_descendant(peer.pid, self.root)

    def describe(self) -> str:
        return f"process tree of pid {self.root}"


@dataclass(frozen=True)
class PidNamespace:
    """Every process in one PID namespace (``pid:[<inode>]``): a container's, never the host's."""

    namespace: str

    @classmethod
    def of(cls, pid: int) -> PidNamespace:
        namespace = procfs.pid_namespace(pid)
        if namespace is None:
            raise NsmServiceError(f"cannot read the PID namespace of process {pid}")
        if namespace == procfs.pid_namespace(os.getpid()):
            # A container sharing the host's PID namespace cannot be told apart from the host.
            raise NsmServiceError(f"process {pid} shares the NSM's own PID namespace")
        return cls(namespace)

    def admits(self, peer: PeerCredentials) -> bool:
        return procfs.pid_namespace(peer.pid) == self.namespace

    def describe(self) -> str:
        return f"PID namespace {self.namespace}"


@dataclass(frozen=True)
class AnyProcess:
    """Every local caller: a registration without a rule (in-process tests and tools)."""

    def admits(self, peer: PeerCredentials) -> bool:
        return True

    def describe(self) -> str:
        return "any local process"


@dataclass
class _Enclave:
    enclave_id: str
    module_id: str
    instance_id: str
    #: All 32 PCRs; ``locked`` holds the indices that can no longer change.
    pcrs: dict[int, bytes]
    locked: set[int]
    socket_path: Path
    #: Who may call; ``None`` until ``bind_peer`` (``bound`` is set once it is known).
    peer: PeerRule | None
    bound: threading.Event = field(repr=False)
    signer: EnclaveSigner = field(repr=False)
    listener: socket.socket | None = field(default=None, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)


class _Refusal(Exception):
    """A request the NSM answers with ``{"Error": code}``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _error(code: str) -> bytes:
    return cbor2.dumps({"Error": code})


def _index(body: Mapping[Any, Any], name: str = "index") -> int:
    value = body.get(name)
    # Not a u16: the module cannot decode the request.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PCR_INDEX:
        raise _Refusal("InvalidArgument")
    return value


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
        peer_wait: float = PEER_WAIT,
    ) -> None:
        self.pki = pki
        self.socket_dir = Path(socket_dir)
        self.clock = clock
        self.leaf_lifetime = leaf_lifetime
        self.socket_mode = socket_mode
        self.peer_wait = peer_wait
        self._enclaves: dict[str, _Enclave] = {}
        self._lock = threading.Lock()
        #: Per-operation latency and failures; the NSM has no throttling, so both answer InternalError.
        self.faults = FaultHooks()

    def register_enclave(
        self,
        enclave_id: str,
        measurements: EnclaveMeasurements,
        pcr3: str,
        debug_mode: bool = False,
        *,
        pid: int | None = None,
        peer: PeerRule | None = None,
        bind_later: bool = False,
        instance_id: str = DEFAULT_INSTANCE_ID,
    ) -> Path:
        """Start the enclave's NSM socket and return its path.

        Who may call it: ``peer``, or the process tree of ``pid``, or, with ``bind_later``,
        the rule given to :meth:`bind_peer` once the enclave runs. With none of them, any
        local process.
        """
        if sum((pid is not None, peer is not None, bind_later)) > 1:
            raise NsmServiceError("give one of pid, peer and bind_later")
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
        rule: PeerRule | None = ProcessTree.of(pid) if pid is not None else peer
        if rule is None and not bind_later:
            rule = AnyProcess()
        bound = threading.Event()
        if rule is not None:
            bound.set()
        with self._lock:
            if enclave_id in self._enclaves:
                raise NsmServiceError(f"enclave {enclave_id} is already registered")
            enclave = _Enclave(
                enclave_id=enclave_id,
                module_id=module_id,
                instance_id=instance_id,
                pcrs={**pcrs, **dict.fromkeys(range(PCR_COUNT, MAX_PCRS), _ZERO)},
                locked=set(range(PCR_COUNT)),
                socket_path=path,
                peer=rule,
                bound=bound,
                signer=self._issue_signer(module_id, instance_id),
            )
            self._start(enclave)
            self._enclaves[enclave_id] = enclave
        _log.info(
            "nsm enclave registered",
            extra={"fields": {"enclave_id": enclave_id, "debug_mode": debug_mode, "pcr0": pcrs[0].hex()}},
        )
        return path

    def bind_peer(self, enclave_id: str, peer: PeerRule) -> None:
        """Name who may call ``enclave_id``'s socket (a ``bind_later`` registration, once only)."""
        with self._lock:
            enclave = self._enclaves.get(enclave_id)
            if enclave is None:
                raise NsmServiceError(f"enclave {enclave_id} is not registered")
            if enclave.peer is not None:
                raise NsmServiceError(f"enclave {enclave_id} is already bound to {enclave.peer.describe()}")
            enclave.peer = peer
            enclave.bound.set()
        _log.info("nsm enclave %s bound to %s", enclave_id, peer.describe())

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
        """The locked PCRs of ``enclave_id``: what its documents carry."""
        with self._lock:
            enclave = self._enclaves[enclave_id]
            return {index: value for index, value in sorted(enclave.pcrs.items()) if index in enclave.locked}

    def _issue_signer(self, module_id: str, instance_id: str) -> EnclaveSigner:
        return self.pki.issue_enclave_signer(
            module_id,
            instance_id=instance_id,
            not_before=self.clock() - BACKDATE,
            lifetime=self.leaf_lifetime,
        )

    def _signer(self, enclave: _Enclave) -> EnclaveSigner:
        if enclave.signer.leaf.certificate.not_valid_after_utc - self.clock() < LEAF_RENEWAL:
            enclave.signer = self._issue_signer(enclave.module_id, enclave.instance_id)
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
            pcrs = {index: value for index, value in sorted(enclave.pcrs.items()) if index in enclave.locked}
        document = AttestationDocument(
            module_id=enclave.module_id,
            timestamp_ms=int(self.clock().timestamp() * 1000),
            pcrs=pcrs,
            certificate=signer.leaf.der,
            cabundle=signer.cabundle,
            public_key=public_key,
            user_data=user_data,
            nonce=nonce,
        )
        return document.sign(signer.leaf.key)

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
        if self.faults.before(str(operation)) is not None:
            return _error("InternalError")
        try:
            if operation == "DescribeNSM":
                return cbor2.dumps({"DescribeNSM": self._describe(enclave_id)})
            if operation == "GetRandom":
                return cbor2.dumps({"GetRandom": {"random": secrets.token_bytes(RANDOM_BYTES)}})
            handler = self._handlers.get(operation)
            if handler is None:
                return _error("InvalidOperation")
            if not isinstance(body, Mapping):
                return _error("InvalidArgument")
            return handler(self, enclave_id, body)
        except _Refusal as refusal:
            return _error(refusal.code)

    def _attest(self, enclave_id: str, body: Mapping[Any, Any]) -> bytes:
        document = self.attestation(
            enclave_id,
            public_key=_optional_bytes(body, "public_key", MAX_PUBLIC_KEY),
            user_data=_optional_bytes(body, "user_data", MAX_USER_DATA),
            nonce=_optional_bytes(body, "nonce", MAX_NONCE),
        )
        return cbor2.dumps({"Attestation": {"document": document}})

    def _describe_pcr(self, enclave_id: str, body: Mapping[Any, Any]) -> bytes:
        index = _index(body)
        with self._lock:
            enclave = self._enclaves[enclave_id]
            if index not in enclave.pcrs:
                raise _Refusal("InvalidIndex")
            answer = {"lock": index in enclave.locked, "data": enclave.pcrs[index]}
        return cbor2.dumps({"DescribePCR": answer})

    def _extend_pcr(self, enclave_id: str, body: Mapping[Any, Any]) -> bytes:
        index, data = _index(body), body.get("data")
        if not isinstance(data, bytes):
            raise _Refusal("InvalidArgument")
        with self._lock:
            enclave = self._enclaves[enclave_id]
            if index not in enclave.pcrs:
                raise _Refusal("InvalidIndex")
            if index in enclave.locked:
                raise _Refusal("ReadOnlyIndex")
            enclave.pcrs[index] = hashlib.sha384(enclave.pcrs[index] + data).digest()
            value = enclave.pcrs[index]
        return cbor2.dumps({"ExtendPCR": {"data": value}})

    def _lock_pcr(self, enclave_id: str, body: Mapping[Any, Any]) -> bytes:
        index = _index(body)
        with self._lock:
            enclave = self._enclaves[enclave_id]
            if index not in enclave.pcrs:
                raise _Refusal("InvalidIndex")
            if index in enclave.locked:
                raise _Refusal("ReadOnlyIndex")
            enclave.locked.add(index)
        return cbor2.dumps("LockPCR")

    def _lock_pcrs(self, enclave_id: str, body: Mapping[Any, Any]) -> bytes:
        count = _index(body, "range")
        if count > MAX_PCRS:
            raise _Refusal("InvalidIndex")
        with self._lock:
            self._enclaves[enclave_id].locked.update(range(count))
        return cbor2.dumps("LockPCRs")

    _handlers: Mapping[str, Callable[[NsmService, str, Mapping[Any, Any]], bytes]] = {
        "Attestation": _attest,
        "DescribePCR": _describe_pcr,
        "ExtendPCR": _extend_pcr,
        "LockPCR": _lock_pcr,
        "LockPCRs": _lock_pcrs,
    }

    def _describe(self, enclave_id: str) -> dict[str, Any]:
        with self._lock:
            enclave = self._enclaves[enclave_id]
            locked = sorted(enclave.locked)
        major, minor, patch = NSM_VERSION
        return {
            "version_major": major,
            "version_minor": minor,
            "version_patch": patch,
            "module_id": enclave.module_id,
            "max_pcrs": MAX_PCRS,
            "locked_pcrs": locked,
            "digest": "SHA384",
        }

    def _admits(self, enclave: _Enclave, peer: PeerCredentials) -> bool:
        # A caller that arrives between registration and binding waits for the binding.
        enclave.bound.wait(self.peer_wait)
        rule = enclave.peer
        return rule is not None and rule.admits(peer)

    def _refuse(self, enclave: _Enclave, sock: socket.socket, peer: PeerCredentials | None) -> None:
        """Answer the caller's first request with ``InvalidOperation`` and log who it was."""
        rule = enclave.peer
        _log.warning(
            "nsm refused pid %s (uid %s, gid %s) on the socket of enclave %s: it admits %s",
            "unknown" if peer is None else peer.pid,
            "unknown" if peer is None else peer.uid,
            "unknown" if peer is None else peer.gid,
            enclave.enclave_id,
            "nobody yet" if rule is None else rule.describe(),
            extra={
                "fields": {
                    "enclave_id": enclave.enclave_id,
                    "pid": None if peer is None else peer.pid,
                    "uid": None if peer is None else peer.uid,
                    "gid": None if peer is None else peer.gid,
                }
            },
        )
        with contextlib.suppress(FramingError, OSError):
            read_frame(sock, deadline=time.monotonic() + REFUSAL_TIMEOUT)
            write_frame(sock, _error("InvalidOperation"))

    def _serve_connection(self, enclave: _Enclave, sock: socket.socket) -> None:
        with sock:
            try:
                peer: PeerCredentials | None = peer_credentials(sock)
            except OSError:
                peer = None
            if peer is None or not self._admits(enclave, peer):
                self._refuse(enclave, sock, peer)
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
