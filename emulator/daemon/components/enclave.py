"""The enclave service in its sandbox; every launch measures what it launches.

A launch (``up``, ``enclave-restart``, ``enclave-kill`` off, any relaunch) takes the image
directory in the state directory as it is at that moment into a private copy (namespace
runtime: :func:`~emulator.nitro.image.snapshot_image`; container runtime: the build
context's ``app/``), measures that copy, registers those measurements with the NSM and
starts the sandbox on that copy. A byte changed in the state directory therefore shows in
the next launch's PCR0, and KMS, whose key policy names the PCR0 measured at ``up``,
refuses that enclave. The NSM socket answers only the launched sandbox: its process tree
(namespace runtime) or its PID namespace (container runtime).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulator.aws.backends import default_cache_dir
from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.components.image import ImageComponent, assemble_spec_image, image_dir_name
from emulator.daemon.components.nsm import NsmComponent
from emulator.daemon.components.vsock_proxy import VsockProxyComponent
from emulator.daemon.enclave_spec import EnclaveSpec
from emulator.daemon.key_release import device_preload, enclave_service_env
from emulator.faults.hooks import ProcessError
from emulator.host import procfs
from emulator.host.artifacts import dependency_set
from emulator.host.process import StartupError, tail_file, unix_socket_open, wait_until
from emulator.host.system.base_image import BaseImageSpec, ensure_base_image
from emulator.host.system.dockerd import DockerEngine, DockerEngineConfig, ensure_engine
from emulator.nitro.image import (
    EnclaveImage,
    container_build_context,
    load_image,
    remove_snapshot,
    snapshot_image,
)
from emulator.nitro.measure import measure_image
from emulator.nitro.nsm import PeerRule, PidNamespace, ProcessTree
from emulator.nitro.pki import DEFAULT_INSTANCE_ID
from emulator.nitro.preload import PreloadError
from emulator.nitro.sandbox import (
    ContainerImageSpec,
    ContainerSandbox,
    NamespaceSandbox,
    Sandbox,
    SandboxSpec,
    enclave_environment,
    interpreter_site_packages,
)
from vault.common.transport import TransportConfig
from vault.infra.artifacts import ENCLAVE
from vault.infra.key_policy import EnclaveMeasurements

#: Generous bound: the wait ends as soon as the enclave listens.
START_TIMEOUT = 60.0
#: The module the vault's enclave program runs (how it is told apart from the sandbox's own
#: processes); another spec's program is :attr:`EnclaveSpec.program`.
ENCLAVE_PROGRAM = "vault.enclave"
#: How long a started sandbox may take to show its process (the NSM socket is bound to it).
PROCESS_TIMEOUT = 30.0
#: Where a launch's copy of the image lives (namespace runtime), under the state's work dir.
LAUNCH_DIR = "enclave-launch"
#: The suffix of the directory a relaunch with overrides assembles (the vault's: enclave-vault-changed).
CHANGED_SUFFIX = "-changed"

#: Makes the sandbox of a launch (tests give their own); ``None``: the configured runtime's.
SandboxFactory = Callable[[SandboxSpec], Sandbox]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """One launch: the image directory it was taken from, the copy that runs, its measurements."""

    source: Path
    image: EnclaveImage
    measurements: EnclaveMeasurements


@dataclass(frozen=True)
class Relaunched:
    #: The image directory in the state directory that the launch was taken from.
    image_dir: str
    #: The copy the sandbox runs (measured at this launch).
    launch_dir: str
    #: PCR0 of the copy that runs, which the NSM attests.
    pcr0: str
    #: PCR0 the key policy names (measured at ``up``).
    policy_pcr0: str
    enclave_id: str

    def to_json(self) -> dict[str, str]:
        return {
            "image_dir": self.image_dir,
            "launch_dir": self.launch_dir,
            "pcr0": self.pcr0,
            "policy_pcr0": self.policy_pcr0,
            "enclave_id": self.enclave_id,
        }


def enclave_program(roots: list[int], program: str = ENCLAVE_PROGRAM) -> list[int]:
    """The enclave program's process(es) below the sandbox: leaves of the tree running the module.

    The sandbox's own processes (``unshare``, the namespace's init) carry the program's
    argv too, so only processes without children in the tree count.
    """
    links = procfs.children_map()
    pids = procfs.tree(roots, links)
    leaves = [pid for pid in pids if not any(child in pids for child in links.get(pid, []))]
    return [pid for pid in leaves if program in procfs.cmdline(pid)] or pids


class EnclaveComponent(Component):
    name = "enclave"

    def __init__(
        self,
        context: Context,
        image: ImageComponent,
        nsm: NsmComponent,
        vsock_proxy: VsockProxyComponent,
        *,
        pcr3: str,
        spec: EnclaveSpec,
        make_sandbox: SandboxFactory | None = None,
    ) -> None:
        super().__init__(context, image, nsm, vsock_proxy)
        self.spec = spec
        self.image = image
        self.nsm = nsm
        self.vsock_proxy = vsock_proxy
        self.pcr3 = pcr3
        self.make_sandbox = make_sandbox
        self.sandbox: Sandbox | None = None
        self.enclave_id = ""
        self.generation = 0
        #: Set when this component started a Docker engine (container runtime).
        self.engine_config: DockerEngineConfig | None = None

    @property
    def cid(self) -> int:
        return self.config.enclave_cid

    def _listen_sockets(self) -> list[Path]:
        """One per port of the spec: the enclave is up once it listens on every one."""
        return [self.vsock_proxy.vsock_dir / f"vsock-{self.cid}-{port}.sock" for port in self.spec.ports]

    def _listening(self) -> bool:
        return all(unix_socket_open(path) for path in self._listen_sockets())

    def _program_env(self, *, vsock_dir: Path, nsm_socket: Path, devices: bool) -> dict[str, str]:
        """The vault's service environment, or another spec's: where its NSM and vsock are, and its env."""
        if self.spec.vault_api:
            return enclave_service_env(
                vsock_dir=vsock_dir, nsm_socket=nsm_socket, enclave_cid=self.cid, devices=devices
            )
        if devices:
            return dict(self.spec.env)
        transport = TransportConfig(kind="uds", uds_dir=vsock_dir, local_cid=self.cid)
        return {**transport.as_env(), "VAULT_NSM": f"uds:{nsm_socket}", **self.spec.env}

    def _python_path(self) -> list[str]:
        # The container image carries its own libraries (deps/).
        if self.config.enclave_runtime != "namespace":
            return []
        # The vault: the enclave tier's dependency set and nothing else of this interpreter's
        # (the sandbox runs python -S). Another spec's program gets this interpreter's libraries.
        if self.spec.vault_api:
            return [str(dependency_set(ENCLAVE))]
        return interpreter_site_packages()

    def start(self) -> None:
        self._launch(self.image.built.image.directory)

    def _prepare(self, source: Path) -> EnclaveImage:
        """The private copy of ``source`` that this launch measures and runs."""
        if self.config.enclave_runtime == "namespace":
            return snapshot_image(source, self.layout.work / LAUNCH_DIR)
        if self.spec.image.kind == "dockerfile":
            # The image holds its Dockerfile (assemble_spec_image): measured, then built as measured.
            return snapshot_image(source, self.layout.work / LAUNCH_DIR)
        # The container runs what the build context holds; app/ is the image's copy.
        context_dir = container_build_context(
            load_image(source), self.layout.work / "enclave-build", self.layout.work / "enclave-deps"
        )
        return load_image(context_dir / "app")

    def _launch(self, source: Path) -> Launch:
        self.generation += 1
        running = self._prepare(source)
        measurements = measure_image(running.directory)
        launch = Launch(source, running, measurements)
        enclave_id = f"{DEFAULT_INSTANCE_ID}-enc{secrets.token_hex(8)}"
        # Registered before the sandbox exists (its socket path goes into the environment);
        # bound to the sandbox's processes once they exist.
        nsm_socket = self.nsm.service.register_enclave(
            enclave_id, measurements, pcr3=self.pcr3, debug_mode=self.config.debug_mode, bind_later=True
        )
        self.enclave_id = enclave_id
        vsock_dir = self.vsock_proxy.vsock_dir
        devices = self.config.enclave_devices is True
        preload = None
        if devices:
            try:
                preload = device_preload(
                    default_cache_dir() / "preload",
                    vsock_dir=vsock_dir,
                    nsm_socket=nsm_socket,
                    enclave_cid=self.cid,
                )
            except PreloadError as exc:
                self.nsm.service.unregister_enclave(enclave_id)
                raise StartupError(f"enclave: {exc} [{exc.code}]") from exc
        spec = SandboxSpec(
            name="enclave",
            image_dir=running.directory,
            vsock_dir=vsock_dir,
            env=enclave_environment(
                image_dir=running.directory,
                extra=self._program_env(vsock_dir=vsock_dir, nsm_socket=Path(nsm_socket), devices=devices),
                python_path=self._python_path(),
            ),
            log_path=self.log_path,
            command=list(self.spec.entrypoint),
            shared_dirs=(Path(nsm_socket).parent,),
            preload=preload,
        )
        sandbox = (
            self.make_sandbox(spec) if self.make_sandbox is not None else self._make_sandbox(spec, launch)
        )
        self.sandbox = sandbox
        self.context.facts.update(
            enclave_id=enclave_id,
            enclave_cid=self.cid,
            enclave_ports=list(self.spec.ports),
            nsm_socket=str(nsm_socket),
            running_image_dir=str(source),
            running_pcr0=measurements.pcr0,
        )
        _log.info("enclave %s launched from %s, measured PCR0 %s", enclave_id, source, measurements.pcr0)
        sandbox.start()
        self.nsm.service.bind_peer(enclave_id, self._peer_rule(sandbox))
        wait_until(
            self._listening,
            timeout=START_TIMEOUT,
            what="enclave",
            alive=sandbox.running,
            on_fail=lambda: tail_file(self.log_path),
        )
        return launch

    def _peer_rule(self, sandbox: Sandbox) -> PeerRule:
        """Who may call this launch's NSM socket: the sandbox's process tree, or its container."""
        wait_until(
            lambda: sandbox.running() and bool(sandbox.pids()),
            timeout=PROCESS_TIMEOUT,
            what="enclave sandbox process",
            alive=sandbox.running,
            on_fail=lambda: tail_file(self.log_path),
        )
        root = sandbox.pids()[0]
        if self.config.enclave_runtime == "namespace":
            return ProcessTree.of(root)
        return PidNamespace.of(root)

    def _make_sandbox(self, spec: SandboxSpec, launch: Launch) -> Sandbox:
        if self.config.enclave_runtime == "namespace":
            return NamespaceSandbox(spec)
        # The engine and the locally built base image live in the shared cache, so they
        # outlive one emulator run; an engine started here is stopped with the enclave.
        cache = default_cache_dir()
        engine_config = DockerEngineConfig(state_dir=cache)
        engine = ensure_engine(engine_config)
        if engine.started:
            self.engine_config = engine_config
        base = ensure_base_image(BaseImageSpec(), engine.docker_host, cache / "base-image").name
        # Tagged by the measurement: a changed byte is another image.
        repository = "nitro-vault-enclave" if self.spec.vault_api else f"nitro-enclave-{self.spec.name}"
        tag = f"{repository}:{launch.measurements.pcr0[:16]}"
        if self.spec.image.kind == "dockerfile":
            # The spec's own context: the measured copy, its measured Dockerfile included (never
            # the spec's file as it is now, which may have changed since the launch measured it).
            context_dir = self.layout.work / "enclave-build"
            if context_dir.exists():
                shutil.rmtree(context_dir)
            shutil.copytree(launch.image.directory, context_dir, symlinks=True)
            for current, _, _ in os.walk(context_dir):
                Path(current).chmod(0o755)
        else:
            # The vault's context holds the image's copy as app/.
            context_dir = launch.image.directory.parent
        return ContainerSandbox(
            spec, ContainerImageSpec(context_dir, tag, base), docker_host=engine.docker_host
        )

    def relaunch(self, overrides: dict[str, bytes]) -> Relaunched:
        """Stop the enclave and launch one from an image with ``overrides`` (none: the original).

        Either way the launch measures the image directory as it is now.
        """
        policy = self.image.built
        if overrides:
            changed = self.layout.images / f"{image_dir_name(self.spec)}{CHANGED_SUFFIX}"
            source = assemble_spec_image(self.spec, changed, overrides=overrides).directory
        else:
            source = policy.image.directory
        self._stop_sandbox()
        launch = self._launch(source)
        return Relaunched(
            image_dir=str(source),
            launch_dir=str(launch.image.directory),
            pcr0=launch.measurements.pcr0,
            policy_pcr0=policy.measurements.pcr0,
            enclave_id=self.enclave_id,
        )

    # -- fault control (emulator.faults.hooks.EnclaveControl) ----------------------------

    def running(self) -> bool:
        return self.sandbox is not None and self.sandbox.running()

    def kill_program(self, wait: float) -> list[int]:
        """SIGKILL the enclave program inside its sandbox; wait up to ``wait`` s for the sandbox to end."""
        sandbox = self.sandbox
        if sandbox is None or not sandbox.running():
            raise ProcessError("the enclave is not running")
        victims = enclave_program(list(sandbox.pids()), self.spec.program)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + wait
        while sandbox.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        return victims

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop_sandbox()
        self._stop_engine()
        remove_snapshot(self.layout.work / LAUNCH_DIR)

    def _stop_sandbox(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.stop()
        service = self.nsm.running_service
        if service is not None and self.enclave_id:
            service.unregister_enclave(self.enclave_id)

    def _stop_engine(self) -> None:
        engine_config, self.engine_config = self.engine_config, None
        if engine_config is not None:
            DockerEngine(engine_config).stop()

    def health(self) -> Health:
        if self.sandbox is None or not self.sandbox.running():
            return Health(False, "not running")
        return Health(self._listening(), self.sandbox.describe())

    def address(self) -> str:
        return ",".join(f"vsock://{self.cid}:{port}" for port in self.spec.ports)

    def pids(self) -> list[int]:
        return list(self.sandbox.pids()) if self.sandbox is not None else []
