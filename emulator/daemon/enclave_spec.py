"""Enclave specs: what the emulator runs as its enclave, the vault being one spec among others.

A spec is a TOML file validated against ``enclave_spec.schema.json`` (beside this module)
and then against what the emulator can serve::

    name = "pong"
    entrypoint = ["python3", "-m", "pong"]   # argv; "python3" is the emulator's interpreter
    ports = [5005]                           # vsock ports the enclave listens on
    instance_role = "pong-instance-role"     # optional: the parent instance's role (PCR3)

    [image]
    directory = "app"                        # or: dockerfile = "Dockerfile", context = "."

    [vsock_proxy]
    port = 8000                              # the proxy's vsock port on the parent (CID 3)
    allowlist = [{ address = "kms.us-east-1.amazonaws.com", port = 443 }]

    [key_policy]
    template = "key-policy.json"             # or an inline table: document = { ... }

    [env]
    GREETING = "pong"

Relative paths are relative to the spec's directory. The allow-list has the form of the
vsock-proxy's own YAML (``allowlist: [{address: ..., port: ...}]``); the emulator serves
only the KMS endpoint of the configured region, so any other entry is refused. The key
policy (a template or an inline document) may name ``${PCR0}``, ``${PCR1}``, ``${PCR2}``,
``${PCR3}``, ``${PCR8}`` (the measured image's), ``${ACCOUNT_ID}``, ``${REGION}`` and
``${INSTANCE_ROLE_ARN}``; without one, the key lets the instance role use it only with an
attestation document carrying the image's PCR0, 1, 2 and 3.

Every refusal is an :class:`EnclaveSpecError` naming the key at fault, raised before
anything starts.
"""

from __future__ import annotations

import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema

import vault
from vault.common.transport import ENCLAVE_PORT, KMS_PROXY_PORT
from vault.infra.artifacts import ENCLAVE

SCHEMA_PATH = Path(__file__).with_name("enclave_spec.schema.json")
#: The stable code of every refusal (``vault-emulator up`` exits with status 2 on it).
SPEC_ERROR_CODE = "enclave-spec-invalid"
VAULT_SPEC_NAME = "vault"
#: The port the vsock-proxy forwards to on the KMS endpoint, as in production.
KMS_ENDPOINT_PORT = 443
#: What a key policy template may name.
POLICY_PLACEHOLDERS = (
    "PCR0",
    "PCR1",
    "PCR2",
    "PCR3",
    "PCR8",
    "ACCOUNT_ID",
    "REGION",
    "INSTANCE_ROLE_ARN",
)

ImageKind = Literal["sources", "directory", "dockerfile"]


class EnclaveSpecError(ValueError):
    """A spec the emulator refuses; ``key`` names the offending key (dotted, with indexes)."""

    code = SPEC_ERROR_CODE

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"[{SPEC_ERROR_CODE}] {key}: {message}")
        self.key = key
        self.message = message


def kms_endpoint(region: str) -> str:
    return f"kms.{region}.amazonaws.com"


@dataclass(frozen=True)
class ImageSource:
    """Where the image's files come from.

    ``sources``: the listed files and package directories under ``root`` (the vault's
    tier file set); ``directory``: every file under ``root``; ``dockerfile``: every file
    of the build context ``root``, built with ``dockerfile`` (container runtime only).
    """

    kind: ImageKind
    root: Path
    sources: tuple[str, ...] = ("",)
    dockerfile: Path | None = None


@dataclass(frozen=True)
class AllowedEndpoint:
    """One entry of the vsock-proxy's allow-list."""

    address: str
    port: int


@dataclass(frozen=True)
class KeyPolicySpec:
    """The key policy: the vault's own (built by :mod:`vault.infra.key_policy`), or a template."""

    kind: Literal["vault", "template"]
    #: JSON text with ``${NAME}`` placeholders (``template`` only).
    template: str = ""

    def render(self, values: Mapping[str, str]) -> dict[str, Any]:
        """The policy with ``values`` filled in (every name of :data:`POLICY_PLACEHOLDERS`)."""
        if self.kind != "template":
            raise ValueError("the vault's key policy is built by vault.infra.key_policy")
        rendered = json.loads(string.Template(self.template).substitute(values))
        if not isinstance(rendered, dict):
            raise ValueError("a key policy is a JSON object")
        return rendered


_DEFAULT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "EnableKeyManagement",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::${ACCOUNT_ID}:root"},
            "Action": ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:Encrypt", "kms:CreateAlias"],
            "Resource": "*",
        },
        {
            "Sid": "AllowAttestedEnclave",
            "Effect": "Allow",
            "Principal": {"AWS": "${INSTANCE_ROLE_ARN}"},
            "Action": [
                "kms:Decrypt",
                "kms:GenerateDataKey",
                "kms:GenerateDataKeyPair",
                "kms:GenerateRandom",
                "kms:DeriveSharedSecret",
            ],
            "Resource": "*",
            "Condition": {
                "StringEqualsIgnoreCase": {
                    f"kms:RecipientAttestation:PCR{index}": f"${{PCR{index}}}" for index in (0, 1, 2, 3)
                }
            },
        },
    ],
}
DEFAULT_KEY_POLICY = KeyPolicySpec("template", json.dumps(_DEFAULT_POLICY, indent=2))


@dataclass(frozen=True)
class EnclaveSpec:
    name: str
    image: ImageSource
    entrypoint: tuple[str, ...]
    ports: tuple[int, ...]
    allowlist: tuple[AllowedEndpoint, ...]
    key_policy: KeyPolicySpec = DEFAULT_KEY_POLICY
    proxy_port: int = KMS_PROXY_PORT
    #: The parent instance's role name; ``None``: the emulator's configured one.
    instance_role: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: The vault's spec also runs the vault's parent, API gateway and table.
    vault_api: bool = False
    #: The file the spec was read from (``None``: built in code).
    path: Path | None = None

    @property
    def program(self) -> str:
        """What tells the enclave program apart in a process list: its module, else its executable."""
        argv = self.entrypoint
        if len(argv) >= 3 and argv[1] == "-m":
            return argv[2]
        return Path(argv[0]).name


def vault_source_root() -> Path:
    """The directory that holds the ``vault`` package being run."""
    return Path(vault.__file__).resolve().parent.parent


def vault_spec(region: str = "us-east-1") -> EnclaveSpec:
    """The vault's enclave: the enclave tier's file set, entry point and ports, and its key policy."""
    image = ENCLAVE.image
    if image is None:
        raise RuntimeError("the enclave tier names no container image")
    return EnclaveSpec(
        name=VAULT_SPEC_NAME,
        image=ImageSource("sources", vault_source_root(), ENCLAVE.sources),
        entrypoint=image.command,
        ports=(ENCLAVE_PORT,),
        allowlist=(AllowedEndpoint(kms_endpoint(region), KMS_ENDPOINT_PORT),),
        key_policy=KeyPolicySpec("vault"),
        proxy_port=KMS_PROXY_PORT,
        vault_api=True,
    )


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _key_of(path: list[str | int]) -> str:
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _schema_error(error: jsonschema.ValidationError) -> EnclaveSpecError:
    path = list(error.absolute_path)
    instance, schema = error.instance, error.schema
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        unknown = sorted(str(name) for name in instance if name not in known)
        return EnclaveSpecError(_key_of([*path, unknown[0]]), "unknown key")
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in error.validator_value if name not in instance]
        return EnclaveSpecError(_key_of([*path, missing[0]]), "is required")
    return EnclaveSpecError(_key_of(path) or "(spec)", error.message)


def validate_document(data: Mapping[str, Any]) -> None:
    """Check ``data`` (a parsed spec) against the schema; the first error, by key, is raised."""
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise _schema_error(errors[0])


def _resolve(base: Path, value: str, key: str, *, directory: bool) -> Path:
    path = (base / value).resolve()
    if directory and not path.is_dir():
        raise EnclaveSpecError(key, f"{path} is not a directory")
    if not directory and not path.is_file():
        raise EnclaveSpecError(key, f"{path} is not a file")
    return path


def _image(data: Mapping[str, str], base: Path) -> ImageSource:
    if "directory" in data:
        if "dockerfile" in data or "context" in data:
            extra = "dockerfile" if "dockerfile" in data else "context"
            raise EnclaveSpecError(f"image.{extra}", "give either image.directory or image.dockerfile")
        return ImageSource("directory", _resolve(base, data["directory"], "image.directory", directory=True))
    if "dockerfile" in data:
        context = _resolve(base, data.get("context", "."), "image.context", directory=True)
        dockerfile = _resolve(base, data["dockerfile"], "image.dockerfile", directory=False)
        return ImageSource("dockerfile", context, dockerfile=dockerfile)
    if "context" in data:
        raise EnclaveSpecError("image.dockerfile", "is required with image.context")
    raise EnclaveSpecError("image.directory", "is required (or image.dockerfile)")


def _allowlist(entries: list[Mapping[str, Any]] | None, region: str) -> tuple[AllowedEndpoint, ...]:
    servable = kms_endpoint(region)
    if entries is None:
        return (AllowedEndpoint(servable, KMS_ENDPOINT_PORT),)
    allowed = []
    for index, entry in enumerate(entries):
        key = f"vsock_proxy.allowlist[{index}]"
        address, port = str(entry["address"]), int(entry["port"])
        if address.lower() != servable:
            raise EnclaveSpecError(
                f"{key}.address", f"the emulator serves only {servable} (the configured region's KMS)"
            )
        if port != KMS_ENDPOINT_PORT:
            raise EnclaveSpecError(f"{key}.port", f"{servable} is served on port {KMS_ENDPOINT_PORT} only")
        allowed.append(AllowedEndpoint(address.lower(), port))
    return tuple(allowed)


def _key_policy(data: Mapping[str, Any] | None, base: Path) -> KeyPolicySpec:
    if data is None:
        return DEFAULT_KEY_POLICY
    if "template" in data and "document" in data:
        raise EnclaveSpecError(
            "key_policy.document", "give either key_policy.template or key_policy.document"
        )
    if "template" in data:
        key = "key_policy.template"
        path = _resolve(base, data["template"], key, directory=False)
        text = path.read_text(encoding="utf-8")
    elif "document" in data:
        key = "key_policy.document"
        text = json.dumps(data["document"], indent=2)
    else:
        raise EnclaveSpecError("key_policy.template", "is required (or key_policy.document)")
    template = string.Template(text)
    if not template.is_valid():
        raise EnclaveSpecError(key, "has a malformed ${...} placeholder")
    unknown = sorted(set(template.get_identifiers()) - set(POLICY_PLACEHOLDERS))
    if unknown:
        raise EnclaveSpecError(key, f"names ${{{unknown[0]}}}; known: {', '.join(POLICY_PLACEHOLDERS)}")
    policy = KeyPolicySpec("template", text)
    try:
        policy.render(dict.fromkeys(POLICY_PLACEHOLDERS, "0"))
    except ValueError as exc:
        raise EnclaveSpecError(key, f"is not a JSON key policy once filled in: {exc}") from None
    return policy


def parse_spec(data: Mapping[str, Any], *, base: Path, region: str, path: Path | None = None) -> EnclaveSpec:
    """The spec in ``data`` (parsed TOML), relative paths resolved against ``base``."""
    validate_document(data)
    proxy = data.get("vsock_proxy", {})
    return EnclaveSpec(
        name=data["name"],
        image=_image(data["image"], base),
        entrypoint=tuple(data["entrypoint"]),
        ports=tuple(data["ports"]),
        allowlist=_allowlist(proxy.get("allowlist"), region),
        key_policy=_key_policy(data.get("key_policy"), base),
        proxy_port=int(proxy.get("port", KMS_PROXY_PORT)),
        instance_role=data.get("instance_role"),
        env=dict(data.get("env", {})),
        path=path,
    )


def load_spec(path: Path, *, region: str) -> EnclaveSpec:
    """Read, validate and resolve the spec file at ``path``."""
    path = Path(path).absolute()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnclaveSpecError("(spec)", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EnclaveSpecError("(spec)", f"{path} is not TOML: {exc}") from None
    return parse_spec(data, base=path.parent, region=region, path=path)
