"""The ``moto`` backend: moto's WSGI application served on 127.0.0.1, inside the calling process."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from emulator.aws.backends.base import AwsBackend, BackendError
from emulator.aws.backends.config import BackendConfig
from emulator.aws.backends.moto_dispatch import install as install_module_list_cache
from emulator.aws.backends.moto_gate import SignedRequestsOnly
from emulator.aws.backends.moto_isolation import install as install_table_isolation
from emulator.aws.backends.moto_state import SNAPSHOT_NAME, SnapshotHeader, restore_snapshot, save_snapshot
from emulator.aws.backends.moto_transactions import install as install_light_transaction_backups
from emulator.aws.upstream import Upstream, WsgiUpstream

_ACCOUNT_ENV = "MOTO_ACCOUNT_ID"


class MotoBackend(AwsBackend):
    """moto keeps its data in module globals: two of these in one process share their tables and keys.

    The HTTP server is what the API's and the enclave's SDK clients (through the daemon's
    services) and tests talk to; the daemon's own services call the same WSGI
    application in process (:meth:`upstream`).

    With ``config.persist``, :meth:`start` restores ``<state_dir>/moto-state.pickle`` if
    there is one, and :meth:`stop` saves it, once nothing is served any more (see
    :mod:`emulator.aws.backends.moto_state`). A start that failed saves nothing, so a
    snapshot that did not restore is never overwritten.
    """

    # moto evaluates a key policy's Deny statements without their conditions: the vault
    # policy's perimeter statements (Deny kms:* to anyone outside the account) would
    # deny every call on the key, DescribeKey included.
    stores_key_policies = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._app: DomainDispatcherApplication | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        #: Set once the backend serves (after a restore): only then does stop() save.
        self._save_on_stop = False
        #: The header of the snapshot restored on start, if any.
        self.restored: SnapshotHeader | None = None
        # A new secret per run: only who can read the state file can use moto's port.
        self._secret = secrets.token_urlsafe(32)

    @property
    def secret_access_key(self) -> str:
        return self._secret

    @property
    def snapshot_path(self) -> Path:
        return self.config.state_dir / SNAPSHOT_NAME

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
        install_module_list_cache()
        # Concurrent Lambda environments: a read must never see half of an update.
        install_table_isolation()
        if self.config.persist and self.snapshot_path.is_file():
            self.restored = restore_snapshot(self.snapshot_path, self.config.account_id)
        # What moto's ThreadedMotoServer does, keeping the application to call in process.
        app = DomainDispatcherApplication(create_backend_app)
        gated = SignedRequestsOnly(
            app,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            account_id=self.config.account_id,
        )
        server = make_server(
            "127.0.0.1", self.config.port, gated, threaded=True, request_handler=MotoRequestHandler
        )
        thread = threading.Thread(target=server.serve_forever, name="moto-server", daemon=True)
        thread.start()
        self._app, self._server, self._thread = app, server, thread
        self._save_on_stop = self.config.persist

    def stop(self) -> None:
        server, self._server = self._server, None
        self._app = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._save_on_stop:
            self._save_on_stop = False
            self.save()

    def save(self) -> SnapshotHeader:
        """Write moto's state of the emulator's services and account to :attr:`snapshot_path` now."""
        return save_snapshot(self.snapshot_path, (self.config.account_id,))

    def pids(self) -> list[int]:
        return []

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise BackendError("the moto backend is not running")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def upstream(self, service: str) -> Upstream:
        if self._app is None:
            raise BackendError("the moto backend is not running")
        return WsgiUpstream(self._app, self.endpoint_url)

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "detail": "moto server thread in the emulator process"}
        if self.config.persist:
            described["snapshot"] = str(self.snapshot_path)
            described["restored_from_moto"] = self.restored.moto_version if self.restored else None
        return described
