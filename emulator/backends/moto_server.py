"""The ``moto`` backend: moto's threaded server on 127.0.0.1, inside the calling process."""

from __future__ import annotations

import logging
import os
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from emulator.backends.base import AwsBackend, BackendError
from emulator.backends.config import BackendConfig
from emulator.backends.moto_transactions import install as install_light_transaction_backups

_ACCOUNT_ENV = "MOTO_ACCOUNT_ID"


class MotoBackend(AwsBackend):
    """moto keeps its data in module globals: two of these in one process share their tables and keys."""

    # moto evaluates a key policy's Deny statements without their conditions: the vault
    # policy's perimeter statements (Deny kms:* to anyone outside the account) would
    # deny every call on the key, DescribeKey included.
    stores_key_policies = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None

    def _start(self) -> None:
        # moto takes the account from $MOTO_ACCOUNT_ID or its default, not from the access key.
        served = os.environ.get(_ACCOUNT_ENV, DEFAULT_ACCOUNT_ID)
        if served != self.config.account_id:
            raise BackendError(
                f"moto serves account {served}, not {self.config.account_id}: "
                f"set {_ACCOUNT_ENV}={self.config.account_id} or use account_id={served}"
            )
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        # werkzeug logs every request to stderr unless its logger was configured; the
        # emulator's own logs say what matters.
        werkzeug_logger = logging.getLogger("werkzeug")
        if werkzeug_logger.level == logging.NOTSET:
            werkzeug_logger.setLevel(logging.WARNING)
        # Audit writes are transactions; moto's backup of a table for each one grows with the table.
        install_light_transaction_backups()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.config.port, verbose=False)
        server.start()
        self._server = server
        self._port = server.get_host_and_port()[1]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        # ThreadedMotoServer.stop() ends serve_forever() but leaves the listening socket open
        # until garbage collection; close it now so the port is free when stop() returns.
        wsgi_server = getattr(server, "_server", None)
        if wsgi_server is not None:
            wsgi_server.server_close()

    def pids(self) -> list[int]:
        return []

    @property
    def endpoint_url(self) -> str:
        if self._server is None or self._port is None:
            raise BackendError("the moto backend is not running")
        return f"http://127.0.0.1:{self._port}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "detail": "moto server thread in the emulator process"}
