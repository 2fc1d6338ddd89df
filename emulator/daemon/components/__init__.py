"""The emulator's components and the order they start in.

    backend ─┬─────────── provision ─┬─ kms-front ── vsock-proxy ─┐
    image ───┴── nsm ────────────────┼────────────────────────────┴─ enclave ─┐
    pki ─────────┘                   │                                        │
    imds ────────────────────────────┼─────────────────────────── parent ─────┤
                                     └─────────────────────────── gateway ────┘
    backend ── dynamodb-proxy ─────────────────────────────────── gateway

Chains without an arrow between them start in parallel. Product processes (parent,
enclave, API gateway with the Lambda handler) each run as their own process with
their own, complete environment; the emulated AWS and Nitro services (KMS front,
vsock-proxy, NSM, IMDS, the DynamoDB fault proxy) run as servers inside the daemon.
Faults are injected into these components at run time by :mod:`emulator.faults.catalogue`.
"""

from __future__ import annotations

import json
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any

from emulator.daemon.components.base import Component, Context, Health
from emulator.daemon.config import STAGE
from emulator.host.process import (
    ManagedProcess,
    StartupError,
    free_port,
    port_open,
    tail_file,
    unix_socket_open,
    wait_until,
)

PARENT_CID = 3
ENCLAVE_PORT = 5050
#: The parent instance of the emulated enclave; the NSM names enclaves after it.
INSTANCE_ID = "i-0e1a2b3c4d5e6f708"
#: Generous bounds: health waits end early as soon as a component answers.
START_TIMEOUT = 60.0


def _random_key(prefix: str) -> dict[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    return {
        "AccessKeyId": prefix + "".join(secrets.choice(alphabet) for _ in range(16)),
        "SecretAccessKey": secrets.token_urlsafe(30)[:40],
    }


def _http_ok(url: str, timeout: float = 0.5, expect: int = 200) -> bool:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        response.read()  # closing before the body is read resets the server's write
        return response.status == expect
    except OSError:
        return False
    finally:
        connection.close()


# -- AWS backend, image, PKI, provisioning ------------------------------------------------


class BackendComponent(Component):
    name = "backend"
    runs_in_daemon = True

    def start(self) -> None:
        from emulator.aws.backends import start_backend
        from emulator.aws.backends.config import BackendConfig

        backend = start_backend(
            BackendConfig(
                kind=self.config.backend,
                state_dir=self.layout.backend,
                region=self.config.region,
                account_id=self.config.account_id,
            )
        )
        self.context.objects["backend"] = backend
        self.context.facts.update(
            backend=self.config.backend,
            backend_endpoint=backend.endpoint_url,
            dynamodb_endpoint=backend.dynamodb_endpoint_url,
            region=self.config.region,
            account_id=self.config.account_id,
            # The backend's own test credentials (never checked; they select the account).
            backend_access_key_id=backend.access_key_id,
            backend_secret_access_key=backend.secret_access_key,
        )

    def _backend(self) -> Any:
        return self.context.objects.get("backend")

    def stop(self) -> None:
        backend = self.context.objects.pop("backend", None)
        if backend is not None:
            backend.stop()

    def health(self) -> Health:
        backend = self._backend()
        return Health(bool(backend is not None and backend.health()))

    def address(self) -> str:
        backend = self._backend()
        return str(backend.endpoint_url) if backend is not None else ""

    def pids(self) -> list[int]:
        backend = self._backend()
        return list(backend.pids()) if backend is not None else []


class ImageComponent(Component):
    """Assemble the enclave image in the state dir and measure it."""

    name = "image"
    is_step = True

    def start(self) -> None:
        from emulator.nitro.image import assemble_image
        from emulator.nitro.measure import measure_image

        image = assemble_image(self.layout.images / "enclave-vault")
        measurements = measure_image(image.directory)
        self.context.objects["image"] = image
        self.context.objects["measurements"] = measurements
        self.context.facts.update(
            image_dir=str(image.directory),
            image_digest=image.digest,
            pcr0=measurements.pcr0,
            pcr1=measurements.pcr1,
            pcr2=measurements.pcr2,
        )

    def address(self) -> str:
        return str(self.context.facts.get("image_dir", ""))


class PkiComponent(Component):
    name = "pki"
    is_step = True

    def start(self) -> None:
        from emulator.nitro.pki import TestPki

        self.context.objects["pki"] = TestPki.load_or_create(self.layout.pki)

    def address(self) -> str:
        return str(self.layout.pki)


class ProvisionComponent(Component):
    """Create the vault table and the KMS key, whose policy names the measured image."""

    name = "provision"
    needs = ("backend", "image")
    is_step = True

    def start(self) -> None:
        from emulator.aws.backends import provision
        from vault.infra.key_policy import KeyPolicyParams, build_key_policy

        pcr3 = str(self.context.facts["pcr3"])
        policy = build_key_policy(
            KeyPolicyParams(
                account_id=self.config.account_id,
                instance_role_arn=self.config.instance_role_arn,
                api_role_arn=self.config.api_role_arn,
                measurements=self.context.objects["measurements"],
                pcr3=pcr3,
            )
        )
        # The KMS front enforces the policy. It is not attached to the backend's key: moto
        # refuses DescribeKey under any key policy with a Deny on kms:* (it ignores the
        # conditions), and neither backend evaluates attestation conditions anyway.
        result = provision(self.context.objects["backend"], self.config.table_name)
        self.context.objects["key_policy"] = policy
        self.context.facts.update(table_name=self.config.table_name, key_arn=result.key_arn)

    def address(self) -> str:
        return str(self.context.facts.get("key_arn", ""))


# -- emulated AWS and Nitro services (servers inside the daemon) ---------------------------


class KmsFrontComponent(Component):
    """KMS attestation front: verifies Recipient attestation, evaluates the key policy."""

    name = "kms-front"
    runs_in_daemon = True
    needs = ("provision", "pki")

    def start(self) -> None:
        from emulator.aws.kms.front import Identity, KmsFront

        credentials = self.context.objects["credentials"]
        backend = self.context.objects["backend"]
        identities = {
            credentials["instance"]["AccessKeyId"]: Identity(
                self.config.instance_role_arn, credentials["instance"]["SecretAccessKey"]
            ),
            credentials["api"]["AccessKeyId"]: Identity(
                self.config.api_role_arn, credentials["api"]["SecretAccessKey"]
            ),
        }
        front = KmsFront(
            backend=backend.upstream("kms"),
            trusted_root=self.context.objects["pki"].root.certificate,
            identities=identities,
            key_policies={self.context.facts["key_arn"]: self.context.objects["key_policy"]},
            region=self.config.region,
            backend_credentials=(backend.access_key_id, backend.secret_access_key),
        )
        front.start()
        self.context.objects["kms_front"] = front
        self.context.facts["kms_endpoint"] = front.endpoint_url

    def stop(self) -> None:
        front = self.context.objects.pop("kms_front", None)
        if front is not None:
            front.stop()

    def health(self) -> Health:
        front = self.context.objects.get("kms_front")
        return Health(front is not None and port_open(int(front.port)))

    def address(self) -> str:
        return str(self.context.facts.get("kms_endpoint", ""))


class VsockProxyComponent(Component):
    """vsock-proxy on the parent's CID 3 port 8000, leading to the KMS front."""

    name = "vsock-proxy"
    runs_in_daemon = True
    needs = ("kms-front",)

    def start(self) -> None:
        from emulator.nitro.vsock_proxy import VsockProxy
        from vault.common.transport import UnixSocketTransport

        front = self.context.objects["kms_front"]
        proxy = VsockProxy(
            UnixSocketTransport(self.layout.vsock_dir, PARENT_CID), ("127.0.0.1", int(front.port))
        )
        proxy.start()
        self.context.objects["vsock_proxy"] = proxy

    def _socket(self) -> Path:
        return self.layout.vsock_dir / f"vsock-{PARENT_CID}-8000.sock"

    def stop(self) -> None:
        proxy = self.context.objects.pop("vsock_proxy", None)
        if proxy is not None:
            proxy.stop()

    def health(self) -> Health:
        return Health(unix_socket_open(self._socket()))

    def address(self) -> str:
        return f"vsock://{PARENT_CID}:8000"


class NsmComponent(Component):
    """The NSM service: attestation documents signed by the test PKI, PCRs of the launched image."""

    name = "nsm"
    runs_in_daemon = True
    needs = ("image", "pki")

    def start(self) -> None:
        from emulator.nitro.nsm import NsmService

        self.context.objects["nsm"] = NsmService(self.context.objects["pki"], self.layout.runtime_dir / "nsm")

    def stop(self) -> None:
        service = self.context.objects.pop("nsm", None)
        if service is not None:
            service.close()

    def health(self) -> Health:
        return Health("nsm" in self.context.objects)

    def address(self) -> str:
        return str(self.layout.runtime_dir / "nsm")


class ImdsComponent(Component):
    name = "imds"
    runs_in_daemon = True

    def start(self) -> None:
        from emulator.aws.imds import ImdsServer

        instance = self.context.objects["credentials"]["instance"]
        server = ImdsServer(
            role=self.config.instance_role_name,
            account_id=self.config.account_id,
            instance_id=INSTANCE_ID,
            # One stable credential, so the KMS front can map its key to the instance role.
            credential_provider=lambda: {**instance, "Token": instance["Token"]},
        )
        server.start()
        self.context.objects["imds"] = server
        self.context.facts["imds_endpoint"] = server.endpoint

    def stop(self) -> None:
        server = self.context.objects.pop("imds", None)
        if server is not None:
            server.stop()

    def health(self) -> Health:
        server = self.context.objects.get("imds")
        return Health(server is not None and port_open(int(server.port)))

    def address(self) -> str:
        return str(self.context.facts.get("imds_endpoint", ""))


class DynamoDbProxyComponent(Component):
    """Pass-through proxy between the API and the backend's DynamoDB, where write faults are injected."""

    name = "dynamodb-proxy"
    runs_in_daemon = True
    needs = ("backend",)

    def start(self) -> None:
        from emulator.aws.dynamodb.proxy import DynamoDbFaultProxy

        backend = self.context.objects["backend"]
        proxy = DynamoDbFaultProxy(
            backend.upstream("dynamodb"),
            region=self.config.region,
            credentials=(backend.access_key_id, backend.secret_access_key),
        )
        proxy.start()
        self.context.objects["dynamodb_proxy"] = proxy
        self.context.facts["dynamodb_proxy_endpoint"] = proxy.endpoint_url

    def stop(self) -> None:
        proxy = self.context.objects.pop("dynamodb_proxy", None)
        if proxy is not None:
            proxy.stop()

    def health(self) -> Health:
        proxy = self.context.objects.get("dynamodb_proxy")
        return Health(proxy is not None and port_open(int(proxy.port)))

    def address(self) -> str:
        return str(self.context.facts.get("dynamodb_proxy_endpoint", ""))


# -- product processes ---------------------------------------------------------------------


class EnclaveComponent(Component):
    """The enclave service in its sandbox, launched from the measured image."""

    name = "enclave"
    needs = ("image", "nsm", "vsock-proxy")

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.sandbox: Any = None
        self.generation = 0
        #: Set when this component started a Docker engine (container runtime).
        self.engine_config: Any = None

    @property
    def cid(self) -> int:
        return self.config.enclave_cid

    def _listen_socket(self) -> Path:
        return self.layout.vsock_dir / f"vsock-{self.cid}-{ENCLAVE_PORT}.sock"

    def start(self) -> None:
        self._launch(self.context.objects["image"], self.context.objects["measurements"])

    def _launch(self, image: Any, measurements: Any) -> None:
        from emulator.nitro.sandbox import SandboxSpec, enclave_environment, interpreter_site_packages
        from vault.common.transport import TransportConfig

        self.generation += 1
        enclave_id = f"{INSTANCE_ID}-enc{secrets.token_hex(8)}"
        nsm_socket = self.context.objects["nsm"].register_enclave(
            enclave_id,
            measurements,
            pcr3=self.context.facts["pcr3"],
            debug_mode=self.config.debug_mode,
        )
        transport = TransportConfig(kind="uds", uds_dir=self.layout.vsock_dir, local_cid=self.cid)
        extra = {
            **transport.as_env(),
            "VAULT_NSM": f"uds:{nsm_socket}",
            # The in-enclave bridge takes a free loopback port; boto3 speaks plain HTTP to it.
            "VAULT_KMS_BRIDGE": "127.0.0.1:0",
            "VAULT_KMS_ENDPOINT": "http://127.0.0.1:{port}",
        }
        spec = SandboxSpec(
            name="enclave",
            image_dir=image.directory,
            vsock_dir=self.layout.vsock_dir,
            env=enclave_environment(
                image_dir=image.directory,
                extra=extra,
                # The container image carries its own libraries (see the Dockerfile).
                python_path=interpreter_site_packages() if self.config.enclave_runtime == "namespace" else (),
            ),
            log_path=self.log_path,
            shared_dirs=(Path(nsm_socket).parent,),
        )
        sandbox = self._make_sandbox(spec, image)
        self.sandbox = sandbox
        self.context.facts.update(enclave_id=enclave_id, enclave_cid=self.cid, nsm_socket=str(nsm_socket))
        sandbox.start()
        wait_until(
            lambda: unix_socket_open(self._listen_socket()),
            timeout=START_TIMEOUT,
            what="enclave",
            alive=sandbox.running,
            on_fail=lambda: tail_file(self.log_path),
        )

    def _make_sandbox(self, spec: Any, image: Any) -> Any:
        from emulator.nitro.sandbox import ContainerImageSpec, ContainerSandbox, NamespaceSandbox

        if self.config.enclave_runtime == "namespace":
            return NamespaceSandbox(spec)
        from emulator.aws.backends.config import default_cache_dir
        from emulator.host.system.base_image import BaseImageSpec, ensure_base_image
        from emulator.host.system.dockerd import DockerEngineConfig, ensure_engine
        from emulator.nitro.image import container_build_context

        # The engine and the locally built base image live in the shared cache, so they
        # outlive one emulator run; an engine started here is stopped with the enclave.
        cache = default_cache_dir()
        engine_config = DockerEngineConfig(state_dir=cache)
        engine = ensure_engine(engine_config)
        if engine.started:
            self.engine_config = engine_config
        base = ensure_base_image(BaseImageSpec(), engine.docker_host, cache / "base-image").name
        context_dir = container_build_context(
            image, self.layout.work / "enclave-build", self.layout.work / "enclave-deps"
        )
        tag = f"nitro-vault-enclave:{image.digest[:12]}"
        return ContainerSandbox(
            spec, ContainerImageSpec(context_dir, tag, base), docker_host=engine.docker_host
        )

    def relaunch(self, overrides: dict[str, bytes]) -> dict[str, Any]:
        """Stop the enclave and launch one from an image with ``overrides`` (none: the original)."""
        from emulator.nitro.image import assemble_image
        from emulator.nitro.measure import measure_image

        if overrides:
            image = assemble_image(self.layout.images / "enclave-vault-changed", overrides=overrides)
            measurements = measure_image(image.directory)
        else:
            image = self.context.objects["image"]
            measurements = self.context.objects["measurements"]
        self._stop_sandbox()
        self._launch(image, measurements)
        self.context.facts["running_image_dir"] = str(image.directory)
        return {
            "image_dir": str(image.directory),
            "pcr0": measurements.pcr0,
            "policy_pcr0": self.context.facts.get("pcr0"),
            "enclave_id": self.context.facts.get("enclave_id"),
        }

    def stop(self) -> None:
        self._stop_sandbox()
        self._stop_engine()

    def _stop_sandbox(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            sandbox.stop()
        nsm = self.context.objects.get("nsm")
        enclave_id = self.context.facts.get("enclave_id")
        if nsm is not None and enclave_id:
            nsm.unregister_enclave(enclave_id)

    def _stop_engine(self) -> None:
        engine_config, self.engine_config = self.engine_config, None
        if engine_config is not None:
            from emulator.host.system.dockerd import DockerEngine

            DockerEngine(engine_config).stop()

    def health(self) -> Health:
        if self.sandbox is None or not self.sandbox.running():
            return Health(False, "not running")
        return Health(unix_socket_open(self._listen_socket()), self.sandbox.describe())

    def address(self) -> str:
        return f"vsock://{self.cid}:{ENCLAVE_PORT}"

    def pids(self) -> list[int]:
        return list(self.sandbox.pids()) if self.sandbox is not None else []


class ParentComponent(Component):
    """``vault-parent`` on 127.0.0.1 with IMDS credentials and the static enclave list."""

    name = "parent"
    # The enclave list is static, so the parent can start while the enclave boots.
    needs = ("imds",)

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.process: ManagedProcess | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        self._run()

    def resume(self) -> None:
        """Start the parent again on the port it had (the gateway's VAULT_URL names that port)."""
        if self.process is not None and self.process.running():
            return
        if not self.port:
            raise StartupError("the parent was never started")
        self._run()

    def _run(self) -> None:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "VAULT_VSOCK_TRANSPORT": "uds",
            "VAULT_VSOCK_UDS_DIR": str(self.layout.vsock_dir),
            "VAULT_VSOCK_LOCAL_CID": str(PARENT_CID),
        }
        argv = [
            sys.executable,
            "-m",
            "vault.parent.cli",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--role",
            self.config.instance_role_name,
            "--imds-endpoint",
            str(self.context.facts["imds_endpoint"]),
            "--enclaves",
            str(self.config.enclave_cid),
            "--skip-refresh-enclaves",
        ]
        self.process = ManagedProcess("parent", argv, env, self.log_path)
        self.process.start()
        process = self.process
        wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{self.port}/health"),
            timeout=START_TIMEOUT,
            what="parent",
            alive=process.running,
            on_fail=lambda: tail_file(self.log_path),
        )
        self.context.facts["parent_url"] = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()

    def health(self) -> Health:
        ok = self.process is not None and self.process.running()
        return Health(ok and _http_ok(f"http://127.0.0.1:{self.port}/health"))

    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    def pids(self) -> list[int]:
        pid = self.process.pid if self.process is not None else None
        return [pid] if pid is not None and self.process is not None and self.process.running() else []


class GatewayComponent(Component):
    """The API gateway process, running the API Lambda handler with the Lambda's environment."""

    name = "gateway"
    needs = ("provision", "kms-front", "parent", "dynamodb-proxy")

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.process: ManagedProcess | None = None
        self.port = 0

    def lambda_environment(self) -> dict[str, str]:
        facts = self.context.facts
        api = self.context.objects["credentials"]["api"]
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "AWS_REGION": self.config.region,
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_ACCESS_KEY_ID": api["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": api["SecretAccessKey"],
            "AWS_SESSION_TOKEN": api["Token"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": "nitro-vault-api",
            "TABLE_NAME": self.config.table_name,
            "KEY_ARN": str(facts["key_arn"]),
            "VAULT_URL": str(facts["parent_url"]),
            # Through the fault proxy (a pass-through unless a write fault is armed).
            "DYNAMODB_ENDPOINT_URL": str(facts.get("dynamodb_proxy_endpoint") or facts["dynamodb_endpoint"]),
            "KMS_ENDPOINT_URL": str(facts["kms_endpoint"]),
            "PARENT_TIMEOUT_SECONDS": "5",
            "POWERTOOLS_SERVICE_NAME": "api",
            "POWERTOOLS_METRICS_NAMESPACE": "NitroVault",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOGGER_LOG_EVENT": "false",
            "LOG_LEVEL": "INFO",
        }

    @property
    def _ready_file(self) -> Path:
        return self.layout.work / "gateway.ready"

    @property
    def _env_file(self) -> Path:
        return self.layout.work / "gateway.env.json"

    def prestart(self) -> None:
        # The Lambda cold start (imports of the handler, Powertools, boto3) overlaps with
        # the backend's start; the process then waits for its environment.
        self.layout.work.mkdir(parents=True, exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        self._env_file.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "emulator.aws.gateway.server",
            "--port",
            str(self.config.port),
            "--stage",
            STAGE,
            "--region",
            self.config.region,
            "--account-id",
            self.config.account_id,
            "--ready-file",
            str(self._ready_file),
            "--env-file",
            str(self._env_file),
        ]
        if self.config.sigv4:
            principals = self.layout.work / "sigv4-principals.json"
            principals.write_text(json.dumps(self.context.objects["sigv4_principals"]))
            principals.chmod(0o600)
            argv += ["--principals", str(principals)]
        base_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        self.process = ManagedProcess("gateway", argv, base_env, self.log_path)
        self.process.start()

    def start(self) -> None:
        process = self.process
        if process is None:
            raise StartupError("the gateway process was not started")
        # Written privately, then renamed into place: the gateway reads and deletes it.
        staging = self._env_file.with_suffix(".tmp")
        staging.touch(mode=0o600)
        staging.write_text(json.dumps(self.lambda_environment()))
        staging.replace(self._env_file)
        wait_until(
            self._ready_file.exists,
            timeout=START_TIMEOUT,
            what="gateway",
            alive=process.running,
            on_fail=lambda: tail_file(self.log_path),
        )
        info = json.loads(self._ready_file.read_text())
        self.port = int(info["port"])
        self.context.facts["api_url"] = f"http://127.0.0.1:{self.port}/{STAGE}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()
        self._env_file.unlink(missing_ok=True)

    def health(self) -> Health:
        ok = self.process is not None and self.process.running()
        # The stage root has no method: API Gateway's own 403 proves the gateway answers.
        return Health(ok and _http_ok(f"http://127.0.0.1:{self.port}/{STAGE}", expect=403))

    def address(self) -> str:
        return str(self.context.facts.get("api_url", ""))

    def pids(self) -> list[int]:
        pid = self.process.pid if self.process is not None else None
        return [pid] if pid is not None and self.process is not None and self.process.running() else []


def make_credentials(context: Context) -> None:
    """Test credentials of the simulated instance role and API role, and SigV4 test principals."""
    instance = {**_random_key("ASIA"), "Token": secrets.token_urlsafe(64)}
    # LocalStack files resources under the account named by a 12-digit access key id (any
    # other id means its default account): the API's key id is therefore the account id,
    # so its DynamoDB calls reach the provisioned table on every backend. The secret stays
    # random, and the KMS front still verifies the API's signatures with it.
    api = {**_random_key("ASIA"), "Token": secrets.token_urlsafe(64)}
    api["AccessKeyId"] = context.config.account_id
    context.objects["credentials"] = {"instance": instance, "api": api}
    tester = _random_key("AKIA")
    arn = f"arn:aws:iam::{context.config.account_id}:user/vault-tester"
    context.objects["sigv4_principals"] = [
        {"access_key_id": tester["AccessKeyId"], "secret_access_key": tester["SecretAccessKey"], "arn": arn}
    ]
    if context.config.sigv4:
        # Published so tests and the demo can sign; they are test-only keys of this emulator run.
        context.facts["sigv4_principal"] = context.objects["sigv4_principals"][0]


def build_components(context: Context) -> list[Component]:
    from vault.infra.key_policy import pcr3_for_role_arn

    make_credentials(context)
    # PCR3 of any enclave on the simulated instance: fixed by the instance role.
    context.facts["pcr3"] = pcr3_for_role_arn(context.config.instance_role_arn)
    context.facts["started_at"] = time.time()
    return [
        BackendComponent(context),
        ImageComponent(context),
        PkiComponent(context),
        ImdsComponent(context),
        DynamoDbProxyComponent(context),
        ProvisionComponent(context),
        KmsFrontComponent(context),
        VsockProxyComponent(context),
        NsmComponent(context),
        EnclaveComponent(context),
        ParentComponent(context),
        GatewayComponent(context),
    ]


__all__ = ["StartupError", "build_components"]
