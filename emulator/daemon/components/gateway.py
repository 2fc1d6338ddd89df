"""The API gateway process, running the API Lambda handler with the Lambda's environment.

The handler runs from the API tier's artifact (:mod:`emulator.host.artifacts`): the
package the ``Api`` stack bundles and the Lambda dependency set, assembled in the state
directory at every ``up``, in processes that import nothing else: up to
``lambda_concurrency`` execution environments, with the function's reserved concurrency if
one is configured (see :mod:`emulator.aws.gateway.runtime`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from emulator.aws.gateway.server import HEALTH_PATH
from emulator.daemon.components.base import Component, Context, Health, http_ok
from emulator.daemon.components.credentials import Credentials
from emulator.daemon.components.dynamodb_proxy import DynamoDbProxyComponent
from emulator.daemon.components.kms_front import KmsFrontComponent
from emulator.daemon.components.parent import ParentComponent
from emulator.daemon.components.provision import ProvisionComponent
from emulator.daemon.config import STAGE
from emulator.host.artifacts import ArtifactError, TierArtifact, assemble
from emulator.host.process import ManagedProcess, StartupError, tail_file, wait_until
from vault.api.reveal_policy import POLICY_ENV
from vault.infra.artifacts import API

#: Generous bound: the wait ends as soon as the gateway reports its port.
START_TIMEOUT = 60.0
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


class GatewayComponent(Component):
    name = "gateway"

    def __init__(
        self,
        context: Context,
        provision: ProvisionComponent,
        kms_front: KmsFrontComponent,
        parent: ParentComponent,
        dynamodb_proxy: DynamoDbProxyComponent,
        *,
        credentials: Credentials,
    ) -> None:
        super().__init__(context, provision, kms_front, parent, dynamodb_proxy)
        self.provision = provision
        self.kms_front = kms_front
        self.parent = parent
        self.dynamodb_proxy = dynamodb_proxy
        self.credentials = credentials
        self.process: ManagedProcess | None = None
        self.artifact: TierArtifact | None = None
        self.port = 0

    def lambda_environment(self) -> dict[str, str]:
        api = self.credentials.api
        environment = {
            **BASE_ENV,
            "AWS_REGION": self.config.region,
            "AWS_DEFAULT_REGION": self.config.region,
            "AWS_ACCESS_KEY_ID": api.access_key_id,
            "AWS_SECRET_ACCESS_KEY": api.secret_access_key,
            "AWS_SESSION_TOKEN": api.token,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_LAMBDA_FUNCTION_NAME": "nitro-vault-api",
            "TABLE_NAME": self.provision.provisioned.table_name,
            "KEY_ARN": self.provision.provisioned.key_arn,
            "AUTHORIZER_KEY_ARN": self.provision.provisioned.authorizer_key_arn,
            # As the CDK app deploys it: searchable fields get blind-index tokens.
            "SEARCH_INDEX": "on",
            "VAULT_URL": self.parent.url,
            # Through the fault proxy (a pass-through unless a write fault is armed).
            "DYNAMODB_ENDPOINT_URL": self.dynamodb_proxy.proxy.endpoint_url,
            "KMS_ENDPOINT_URL": self.kms_front.front.endpoint_url,
            "PARENT_TIMEOUT_SECONDS": "5",
            "POWERTOOLS_SERVICE_NAME": "api",
            "POWERTOOLS_METRICS_NAMESPACE": "NitroVault",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOGGER_LOG_EVENT": "false",
            "LOG_LEVEL": "INFO",
        }
        # The same variable and text the CDK app deploys from vault:revealPolicy.
        policy = self.config.reveal_policy_json
        if policy is not None:
            environment[POLICY_ENV] = policy
        return environment

    @property
    def _ready_file(self) -> Path:
        return self.layout.work / "gateway.ready"

    @property
    def _env_file(self) -> Path:
        return self.layout.work / "gateway.env.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{STAGE}"

    def prestart(self) -> None:
        # The Lambda cold start (imports of the handler, Powertools, boto3) overlaps with
        # the backend's start; the process then waits for its environment.
        self.layout.work.mkdir(parents=True, exist_ok=True)
        self._ready_file.unlink(missing_ok=True)
        self._env_file.unlink(missing_ok=True)
        try:
            artifact = assemble(API, self.layout.work / "artifacts" / API.name)
        except ArtifactError as exc:
            raise StartupError(f"gateway: {exc}") from exc
        self.artifact = artifact
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
            # The dashboard (/_emulator/) reads the state file and asks the control socket.
            "--state-dir",
            str(self.layout.root),
            "--artifact",
            str(artifact.directory),
            "--dependencies",
            str(artifact.dependencies),
            "--concurrency",
            str(self.config.lambda_concurrency),
        ]
        if self.config.reserved_concurrency is not None:
            argv += ["--reserved-concurrency", str(self.config.reserved_concurrency)]
        if self.config.sigv4:
            principals = self.layout.work / "sigv4-principals.json"
            principals.write_text(json.dumps([p.to_json() for p in self.credentials.principals]))
            principals.chmod(0o600)
            argv += ["--principals", str(principals)]
        self.process = ManagedProcess("gateway", argv, dict(BASE_ENV), self.log_path)
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
        if "error" in info:
            # The function's process could not import its handler: the message names tier and module.
            raise StartupError(f"gateway: {info['error']}")
        self.port = int(info["port"])
        self.context.facts["api_url"] = self.url

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.stop()
        self._env_file.unlink(missing_ok=True)

    def health(self) -> Health:
        ok = self.process is not None and self.process.running()
        return Health(ok and http_ok(f"http://127.0.0.1:{self.port}{HEALTH_PATH}"))

    def address(self) -> str:
        return self.url if self.port else ""

    def pids(self) -> list[int]:
        process = self.process
        pid = process.pid if process is not None else None
        return [pid] if pid is not None and process is not None and process.running() else []
