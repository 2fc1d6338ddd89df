"""``vault-parent`` on 127.0.0.1 with IMDS credentials and the static enclave list.

The parent runs from the parent tier's artifact (:mod:`emulator.host.artifacts`): its
file set, the one the instances' wheel holds, and its dependency set, in an isolated
interpreter that imports nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal

from emulator.aws.backends import default_cache_dir
from emulator.daemon.components.base import Component, Context, Health, http_ok
from emulator.daemon.components.imds import ImdsComponent
from emulator.faults.hooks import ProcessError
from emulator.host.artifacts import ArtifactError, TierArtifact, assemble, missing_module
from emulator.host.process import ManagedProcess, StartupError, free_port, tail_file, wait_until
from emulator.nitro.preload import PreloadError, preload_for
from vault.common.transport import PARENT_CID, TransportConfig
from vault.infra.artifacts import PARENT

#: Generous bound: the wait ends as soon as the parent answers its health check.
START_TIMEOUT = 60.0


class ParentComponent(Component):
    name = "parent"

    # The enclave list is static, so the parent can start while the enclave boots.
    def __init__(self, context: Context, imds: ImdsComponent) -> None:
        super().__init__(context, imds)
        self.imds = imds
        self.process: ManagedProcess | None = None
        self.artifact: TierArtifact | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            self.artifact = assemble(PARENT, self.layout.work / "artifacts" / PARENT.name)
        except ArtifactError as exc:
            raise StartupError(f"parent: {exc}") from exc
        self.port = free_port()
        self._run()

    def resume(self) -> None:
        """Start the parent again on the port it had (the gateway's VAULT_URL names that port)."""
        if self.process is not None and self.process.running():
            return
        if not self.port:
            raise StartupError("the parent was never started")
        self._run()

    def environment(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        if not self.config.enclave_devices:
            transport = TransportConfig(kind="uds", uds_dir=self.layout.vsock_dir, local_cid=PARENT_CID)
            return {**env, **transport.as_env()}
        # Device mode: the parent's production AF_VSOCK, led to the emulated vsock by the preload.
        try:
            preload = preload_for(
                default_cache_dir() / "preload", vsock_dir=self.layout.vsock_dir, local_cid=PARENT_CID
            )
        except PreloadError as exc:
            raise StartupError(f"parent: {exc} [{exc.code}]") from exc
        return {**env, **preload.env()}

    def command(self) -> list[str]:
        artifact = self.artifact
        if artifact is None:
            raise StartupError("the parent's artifact was not assembled")
        return artifact.command(
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--role",
            self.config.instance_role_name,
            "--imds-endpoint",
            self.imds.server.endpoint,
            "--enclaves",
            str(self.config.enclave_cid),
            "--skip-refresh-enclaves",
        )

    def _run(self) -> None:
        process = ManagedProcess("parent", self.command(), self.environment(), self.log_path)
        self.process = process
        process.start()
        self.wait_ready(process)
        self.context.facts["parent_url"] = self.url

    def wait_ready(self, process: ManagedProcess) -> None:
        try:
            wait_until(
                lambda: http_ok(f"{self.url}/health"),
                timeout=START_TIMEOUT,
                what="parent",
                alive=process.running,
                on_fail=lambda: tail_file(self.log_path),
            )
        except StartupError as exc:
            # A module the artifact lacks: say which, rather than only the log's tail.
            missing = missing_module(tail_file(self.log_path))
            if missing is not None:
                raise StartupError(f"parent: {missing}") from exc
            raise

    # -- fault control (emulator.faults.hooks.ParentControl) ------------------------------

    def _running_pid(self) -> int:
        process = self.process
        pid = process.pid if process is not None else None
        if process is None or pid is None or not process.running():
            raise ProcessError("the parent is not running")
        return pid

    def freeze(self) -> int:
        """SIGSTOP the parent's process group: connections are accepted, never answered."""
        pid = self._running_pid()
        os.killpg(pid, signal.SIGSTOP)
        return pid

    def thaw(self) -> int:
        pid = self._running_pid()
        os.killpg(pid, signal.SIGCONT)
        return pid

    def take_down(self, *, hard: bool) -> int:
        pid = self._running_pid()
        if hard:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.stop()  # reaps it (and stops it gracefully unless it was killed above)
        return pid

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()

    def health(self) -> Health:
        ok = self.process is not None and self.process.running()
        return Health(ok and http_ok(f"{self.url}/health"))

    def address(self) -> str:
        return self.url if self.port else ""

    def pids(self) -> list[int]:
        process = self.process
        pid = process.pid if process is not None else None
        return [pid] if pid is not None and process is not None and process.running() else []
