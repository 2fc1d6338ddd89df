"""Assembling the service from its configuration and serving it with uvicorn.

The listening socket is bound before uvicorn starts, so a port conflict is a clear
error (not a log line in a server that then exits) and port 0 yields the real port
at once. :class:`ParentServer` runs the same thing on a background thread, for
tests and for an emulator that hosts the parent in its own process.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType, TracebackType

import uvicorn
from starlette.applications import Starlette

from vault.common.transport import VsockTransport
from vault.parent.app import EnclaveForwarder, ParentServices, create_app
from vault.parent.config import ConfigError, ParentConfig
from vault.parent.credentials import CachedCredentials, CredentialProvider
from vault.parent.enclave_client import EnclaveClient
from vault.parent.imds import ImdsClient
from vault.parent.nitro_cli import NitroCliRegistry
from vault.parent.registry import EnclaveRegistry, StaticRegistry

log = logging.getLogger(__name__)

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def build_registry(config: ParentConfig) -> EnclaveRegistry:
    if config.static_enclaves is not None:
        return StaticRegistry(config.static_enclaves)
    return NitroCliRegistry.from_config(config)


def build_services(
    config: ParentConfig,
    *,
    transport: VsockTransport | None = None,
    credentials: CredentialProvider | None = None,
    registry: EnclaveRegistry | None = None,
    forwarder: EnclaveForwarder | None = None,
) -> ParentServices:
    """The production wiring; each part can be replaced (an emulator, a test)."""
    if transport is None and forwarder is None:
        try:
            transport = config.transport.create()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if forwarder is None:
        assert transport is not None
        forwarder = EnclaveClient(transport, config.enclave_timeouts, workers=config.enclave_workers)
    if credentials is None:
        imds = ImdsClient(
            config.imds_endpoint, role=config.role, timeout=config.imds_timeout, attempts=config.imds_attempts
        )
        credentials = CachedCredentials(imds)
    return ParentServices(
        registry=registry if registry is not None else build_registry(config),
        credentials=credentials,
        enclaves=forwarder,
    )


def build_app(config: ParentConfig, services: ParentServices | None = None) -> Starlette:
    return create_app(
        services if services is not None else build_services(config),
        max_body_size=config.max_body_size,
        request_timeout=config.request_timeout,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (``host``, ``port``); :class:`OSError` names the address on failure."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, but a signal that stopped it gracefully is not raised again.

    uvicorn re-raises the captured SIGINT/SIGTERM after shutting down, so the process
    ends "killed by signal"; a service that stopped as asked should exit 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in _HANDLED_SIGNALS}
        for sig in _HANDLED_SIGNALS:
            signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        log.info("shutting down", extra={"fields": {"signal": signal.Signals(sig).name}})
        self.handle_exit(sig, frame)


def _uvicorn_server(app: Starlette, config: ParentConfig) -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            lifespan="on",
            # Logging is configured by the service (JSON); uvicorn's records propagate to it.
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, int(config.request_timeout)),
        )
    )


def serve(config: ParentConfig) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and return."""
    app = build_app(config)
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    log.info("listening", extra={"fields": {"host": host, "port": port}})
    with sock:
        _uvicorn_server(app, config).run(sockets=[sock])


class ParentServer:
    """The service on a background thread; ``with ParentServer(config) as server: server.url``."""

    def __init__(self, config: ParentConfig, services: ParentServices | None = None) -> None:
        self.config = config
        self.app = build_app(config, services)
        self._server = _uvicorn_server(self.app, config)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def _run(self) -> None:
        assert self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc

    def start(self, timeout: float = 10.0) -> ParentServer:
        self._sock = bind(self.config.host, self.config.port)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="vault-parent", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            self.stop()
            raise RuntimeError(f"the parent service did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ParentServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
