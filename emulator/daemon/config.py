"""The emulator's configuration and the layout of its state directory.

Everything the emulator creates lives under one state directory (default
``.emulator/`` in the working directory), except Unix sockets when that directory's
path is too long for ``sun_path``: those go to a short per-state-dir directory under
the system temporary directory, recorded in the state file and removed on ``down``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from emulator.aws.backends.config import BACKEND_KINDS, BackendKind
from emulator.daemon.enclave_spec import EnclaveSpec, EnclaveSpecError, load_spec, vault_spec
from vault.api.reveal_policy import RevealPolicyError, deployable
from vault.common.transport import DEFAULT_ENCLAVE_CID

EnclaveRuntime = Literal["namespace", "container"]

RUNTIMES: tuple[EnclaveRuntime, ...] = ("namespace", "container")

DEFAULT_STATE_DIR = ".emulator"
DEFAULT_GATEWAY_PORT = 7450
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_TABLE_NAME = "nitro-vault"
DEFAULT_INSTANCE_ROLE = "nitro-vault-instance-role"
DEFAULT_API_ROLE = "nitro-vault-api-role"
STAGE = "v1"

# sun_path holds 108 bytes including the terminating NUL. The longest socket path under
# the runtime directory is an NSM socket, "/nsm/nsm-<enclave id>.sock", with enclave ids
# of nitro-cli's form "i-<17 hex>-enc<16 hex>" (39 bytes): 57 bytes, rounded up.
_SUN_PATH_MAX = 107
_LONGEST_SOCKET_NAME = 60


#: Each execution environment is a process of its own (~70 MB): a bound on what one ``up`` starts.
MAX_LAMBDA_CONCURRENCY = 64
#: nitro-cli's ``vsock-proxy --num_workers`` default (the parent's service passes none).
DEFAULT_VSOCK_PROXY_WORKERS = 4


def default_lambda_concurrency() -> int:
    """One execution environment per core: more only queue for the same CPUs."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class EmulatorConfig:
    """What ``vault-emulator up`` was asked for."""

    state_dir: Path = field(default_factory=lambda: Path(DEFAULT_STATE_DIR))
    backend: BackendKind = "moto"
    enclave_runtime: EnclaveRuntime = "namespace"
    #: Gateway port on 127.0.0.1; 0 picks a free one.
    port: int = DEFAULT_GATEWAY_PORT
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    table_name: str = DEFAULT_TABLE_NAME
    instance_role_name: str = DEFAULT_INSTANCE_ROLE
    api_role_name: str = DEFAULT_API_ROLE
    enclave_cid: int = DEFAULT_ENCLAVE_CID
    #: Device mode: the enclave keeps its production configuration (``/dev/nsm``, ``AF_VSOCK``)
    #: and reaches the emulated NSM and vsock through the preload library
    #: (:mod:`emulator.nitro.preload`); off, it is configured for Unix sockets. ``None``: on for
    #: the namespace runtime, off for the container runtime (``__post_init__`` resolves it).
    enclave_devices: bool | None = None
    #: Real hardware zeroes PCR0, 1, 2 and 8 of a debug-mode enclave (not PCR3, 4); so does the NSM emulator.
    debug_mode: bool = False
    #: Decision D15: the gateway can require SigV4 signed by a test principal.
    sigv4: bool = False
    #: The API Lambda's execution environments (processes) at most; beyond them an invocation waits.
    lambda_concurrency: int = field(default_factory=default_lambda_concurrency)
    #: The API function's reserved concurrency (``None``: none): beyond it, invocations are throttled.
    reserved_concurrency: int | None = None
    #: Production's bottlenecks (``--production-limits``): the vsock-proxy relays at most
    #: ``vsock_proxy_workers`` connections at once (more wait), and the KMS front throttles
    #: the cryptographic operations past KMS's published request quotas for ``region``.
    production_limits: bool = False
    vsock_proxy_workers: int = DEFAULT_VSOCK_PROXY_WORKERS
    #: Multiplies every KMS request quota (production limits only): below 1, a load test on
    #: one machine reaches the quotas at a fraction of production's request rates.
    kms_quota_scale: float = 1.0
    #: Seconds ``up`` waits for the whole emulator to become healthy.
    startup_timeout: float = 120.0
    #: Keep vaults, audit and keys across ``down`` and ``up`` (the backend's state under
    #: ``<state>/backend``; the PKI and the image are kept anyway); ``reset`` clears them.
    persist: bool = False
    #: Interpreter for LocalStack's virtualenv (``--localstack-python``); ``None``: the
    #: backend's default (``$VAULT_LOCALSTACK_PYTHON``, else one found on PATH or pyenv).
    localstack_python: Path | None = None
    #: The enclave spec file (:mod:`emulator.daemon.enclave_spec`); ``None``: the vault's spec.
    enclave_spec: Path | None = None
    #: The reveal policy file (``--reveal-policy``, JSON); ``None``: the API runs without one.
    reveal_policy: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_KINDS:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_KINDS)}, not {self.backend!r}")
        if self.enclave_runtime not in RUNTIMES:
            raise ValueError(f"enclave runtime must be one of {', '.join(RUNTIMES)}")
        if self.enclave_devices is None:
            object.__setattr__(self, "enclave_devices", self.enclave_runtime == "namespace")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0..65535, not {self.port}")
        if self.enclave_cid < 4:
            raise ValueError("enclave CIDs below 4 are reserved")
        concurrency, reserved = self.lambda_concurrency, self.reserved_concurrency
        if not 1 <= concurrency <= MAX_LAMBDA_CONCURRENCY:
            raise ValueError(
                f"the Lambda concurrency must be within 1..{MAX_LAMBDA_CONCURRENCY}, not {concurrency}"
            )
        if self.vsock_proxy_workers < 1:
            raise ValueError(f"the vsock-proxy workers must be at least 1, not {self.vsock_proxy_workers}")
        if not self.kms_quota_scale > 0:
            raise ValueError(f"the KMS quota scale must be positive, not {self.kms_quota_scale}")
        if reserved is not None and not 1 <= reserved <= concurrency:
            raise ValueError(
                f"the reserved concurrency must be within 1..{self.lambda_concurrency} "
                f"(the Lambda concurrency), not {self.reserved_concurrency}"
            )
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        if self.localstack_python is not None:
            # Absolute: the daemon resolves it from another working directory.
            object.__setattr__(self, "localstack_python", Path(self.localstack_python).absolute())
        if self.reveal_policy is not None:
            object.__setattr__(self, "reveal_policy", Path(self.reveal_policy).absolute())
            # Refused here, before anything starts (RevealPolicyError says what is wrong).
            _ = self.reveal_policy_json
        if self.enclave_spec is not None:
            object.__setattr__(self, "enclave_spec", Path(self.enclave_spec).absolute())
            # Refused here, before anything starts (EnclaveSpecError names the key).
            spec = self.spec
            if spec.image.kind == "dockerfile" and self.enclave_runtime != "container":
                raise EnclaveSpecError("image.dockerfile", "a Dockerfile image needs the container runtime")
            if spec.instance_role is not None and self.instance_role_name == DEFAULT_INSTANCE_ROLE:
                object.__setattr__(self, "instance_role_name", spec.instance_role)

    @property
    def spec(self) -> EnclaveSpec:
        """The enclave this run launches: the spec file's, or the vault's."""
        if self.enclave_spec is None:
            return vault_spec(self.region)
        return load_spec(self.enclave_spec, region=self.region)

    @property
    def reveal_policy_json(self) -> str | None:
        """The policy as the API's ``REVEAL_POLICY`` holds it, the same text the CDK app deploys."""
        if self.reveal_policy is None:
            return None
        try:
            text = self.reveal_policy.read_text(encoding="utf-8")
        except OSError as exc:
            raise RevealPolicyError(f"cannot read {self.reveal_policy} ({exc.__class__.__name__})") from None
        try:
            return deployable(text)
        except RevealPolicyError as exc:
            raise RevealPolicyError(f"{self.reveal_policy}: {exc}") from None

    @property
    def layout(self) -> StateLayout:
        return StateLayout(self.state_dir)

    @property
    def instance_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.instance_role_name}"

    @property
    def api_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{self.api_role_name}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["localstack_python"] = str(self.localstack_python) if self.localstack_python else None
        data["enclave_spec"] = str(self.enclave_spec) if self.enclave_spec else None
        data["reveal_policy"] = str(self.reveal_policy) if self.reveal_policy else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorConfig:
        known = {name for name in cls.__dataclass_fields__}
        values = {key: value for key, value in data.items() if key in known}
        values["state_dir"] = Path(values.get("state_dir", DEFAULT_STATE_DIR))
        python = values.get("localstack_python")
        values["localstack_python"] = Path(python) if python else None
        spec = values.get("enclave_spec")
        values["enclave_spec"] = Path(spec) if spec else None
        policy = values.get("reveal_policy")
        values["reveal_policy"] = Path(policy) if policy else None
        return cls(**values)


@dataclass(frozen=True)
class StateLayout:
    """Paths inside the state directory."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def progress_file(self) -> Path:
        """The daemon's slow steps as they begin and end (JSON lines; ``up`` relays them)."""
        return self.root / "progress.jsonl"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def backend(self) -> Path:
        return self.root / "backend"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def work(self) -> Path:
        """Scratch files of components (ready files, enclave containers' build contexts)."""
        return self.root / "work"

    @property
    def runtime_dir(self) -> Path:
        """Where Unix sockets live: ``<root>/run`` unless that path is too long for sockets."""
        preferred = self.root / "run"
        if len(os.fsencode(preferred)) + _LONGEST_SOCKET_NAME <= _SUN_PATH_MAX:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"nitro-vault-{digest}"

    @property
    def vsock_dir(self) -> Path:
        """The emulated vsock: one Unix socket per (CID, port), shared with the enclave sandbox."""
        return self.runtime_dir / "vsock"

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    def ensure(self) -> None:
        for path in (self.root, self.logs, self.images, self.backend, self.pki, self.work, self.vsock_dir):
            path.mkdir(parents=True, exist_ok=True)
