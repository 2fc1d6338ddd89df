"""Configuration of the parent service: flags, environment variables and defaults (spec 3.1).

Every setting has a flag and an environment variable; a flag wins over the variable,
which wins over the default. ``ParentConfig()`` built in code keeps both skip flags
set, as upstream's programmatic default does, so that a test never runs ``nitro-cli``
by accident; :func:`parse_config` (the command line) clears them unless asked.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from vault.common.transport import TransportConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_IMDS_ENDPOINT = "http://169.254.169.254"
DEFAULT_EIF_PATH = "/home/ec2-user/enclave-vault.eif"
DEFAULT_NITRO_CLI = "nitro-cli"
#: nitro-cli names an enclave after its EIF file; only these enclaves are ours.
ENCLAVE_PREFIX = "enclave-vault"
REFRESH_ENCLAVES_INTERVAL = 10.0
#: Upstream launches up to 2 enclaves minus *all* listed ones, because the ACM enclave
#: (2 vCPUs) and one vault enclave (1 vCPU) fill the allocator's 3 vCPUs. Counting only
#: vault enclaves, the equivalent target is one.
DEFAULT_VAULT_ENCLAVES = 1
#: Upstream's size for its Rust image. A Python image needs more memory (the EIF's root
#: file system lives in enclave RAM), so a deployment passes the size its allocator reserves.
DEFAULT_ENCLAVE_CPU_COUNT = 1
DEFAULT_ENCLAVE_MEMORY_MIB = 512
#: nitro-cli refuses to launch an enclave with less memory than this.
MIN_ENCLAVE_MEMORY_MIB = 64
MAX_BODY_SIZE = 1024 * 1024
REQUEST_TIMEOUT = 30.0
#: The API gives the parent 5 s; connect plus read must leave it room to answer.
ENCLAVE_CONNECT_TIMEOUT = 0.5
ENCLAVE_READ_TIMEOUT = 2.5
#: Threads doing blocking vsock I/O at once; the enclave serves 32 connections.
ENCLAVE_WORKERS = 32
IMDS_TIMEOUT = 1.0
IMDS_ATTEMPTS = 3
NITRO_CLI_TIMEOUT = 60.0
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

_T = TypeVar("_T")


class ConfigError(ValueError):
    """The configuration is invalid; the text names the setting and the rule."""


@dataclass(frozen=True)
class EnclaveTimeouts:
    connect: float = ENCLAVE_CONNECT_TIMEOUT
    read: float = ENCLAVE_READ_TIMEOUT

    @property
    def total(self) -> float:
        """The longest one exchange may take, waiting for a worker thread included."""
        return self.connect + self.read


@dataclass(frozen=True)
class ParentConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: ``None`` means "discover the role from IMDS" (decision D11).
    role: str | None = None
    skip_refresh_enclaves: bool = True
    skip_run_enclaves: bool = True
    imds_endpoint: str = DEFAULT_IMDS_ENDPOINT
    imds_timeout: float = IMDS_TIMEOUT
    imds_attempts: int = IMDS_ATTEMPTS
    #: A fixed enclave list (the emulator); ``None`` means ask ``nitro-cli``.
    static_enclaves: tuple[dict[str, Any], ...] | None = None
    eif_path: str = DEFAULT_EIF_PATH
    nitro_cli: str = DEFAULT_NITRO_CLI
    nitro_cli_timeout: float = NITRO_CLI_TIMEOUT
    refresh_interval: float = REFRESH_ENCLAVES_INTERVAL
    vault_enclaves: int = DEFAULT_VAULT_ENCLAVES
    #: Size of each vault enclave launched; the allocator must have reserved at least this.
    enclave_cpu_count: int = DEFAULT_ENCLAVE_CPU_COUNT
    enclave_memory_mib: int = DEFAULT_ENCLAVE_MEMORY_MIB
    enclave_timeouts: EnclaveTimeouts = field(default_factory=EnclaveTimeouts)
    enclave_workers: int = ENCLAVE_WORKERS
    request_timeout: float = REQUEST_TIMEOUT
    max_body_size: int = MAX_BODY_SIZE
    log_level: str = "INFO"
    transport: TransportConfig = field(default_factory=TransportConfig)

    def describe(self) -> dict[str, Any]:
        """The options worth logging at start; none of them is secret."""
        return {
            "host": self.host,
            "port": self.port,
            "role": self.role,
            "skip_refresh_enclaves": self.skip_refresh_enclaves,
            "skip_run_enclaves": self.skip_run_enclaves,
            "imds_endpoint": self.imds_endpoint,
            "static_enclaves": None
            if self.static_enclaves is None
            else [e.get("EnclaveCID") for e in self.static_enclaves],
            "eif_path": self.eif_path,
            "nitro_cli": self.nitro_cli,
            "vault_enclaves": self.vault_enclaves,
            "enclave_cpu_count": self.enclave_cpu_count,
            "enclave_memory_mib": self.enclave_memory_mib,
            "enclave_connect_timeout": self.enclave_timeouts.connect,
            "enclave_read_timeout": self.enclave_timeouts.read,
            "enclave_workers": self.enclave_workers,
            "transport": self.transport.kind,
        }


class _Parser(argparse.ArgumentParser):
    """Raises :class:`ConfigError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _argument(parse: Callable[[str], _T]) -> Callable[[str], _T]:
    """Let argparse report our message: it only keeps the text of ``ArgumentTypeError``."""

    def wrapped(text: str) -> _T:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def parse_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"invalid port {text!r}: not an integer") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"invalid port {value}: must be between 0 and 65535")
    return value


def _positive_float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"invalid {name} {text!r}: not a number") from None
        if not 0 < value < float("inf"):
            raise ConfigError(f"invalid {name} {text!r}: must be a positive number of seconds")
        return value

    return _argument(parse)


def _count(name: str, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"invalid {name} {text!r}: not an integer") from None
        if value < minimum:
            raise ConfigError(f"invalid {name} {value}: must be at least {minimum}")
        return value

    return _argument(parse)


def _bool_env(name: str, environ: Mapping[str, str]) -> bool:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return False
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"invalid {name} {raw!r}: expected true or false")


def parse_log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in LOG_LEVELS:
        raise ConfigError(f"invalid log level {text!r}: expected one of {', '.join(LOG_LEVELS)}")
    return value


def _cid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"invalid enclave CID {value!r}: not an integer")
    if not 0 <= value <= 0xFFFFFFFF:
        raise ConfigError(f"invalid enclave CID {value}: does not fit 32 bits")
    return value


def static_description(cid: int) -> dict[str, Any]:
    """A describe-enclaves object for an enclave known only by its CID."""
    return {
        "EnclaveName": ENCLAVE_PREFIX,
        "EnclaveID": f"i-static-enc-{cid:08x}",
        "ProcessID": 0,
        "EnclaveCID": cid,
        "NumberOfCPUs": DEFAULT_ENCLAVE_CPU_COUNT,
        "CPUIDs": [],
        "MemoryMiB": DEFAULT_ENCLAVE_MEMORY_MIB,
        "State": "RUNNING",
        "Flags": "NONE",
    }


def parse_static_enclaves(text: str) -> tuple[dict[str, Any], ...]:
    """``16,17`` (CIDs) or a JSON array of CIDs and/or describe-enclaves objects."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid enclave list: {exc.msg}") from None
    else:
        items = []
        for part in stripped.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                items.append(int(part, 0))
            except ValueError:
                raise ConfigError(f"invalid enclave CID {part!r}: not an integer") from None
    if not isinstance(items, list):
        raise ConfigError("invalid enclave list: expected CIDs or a JSON array")
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            _cid(item.get("EnclaveCID"))
            description = dict(item)
            description.setdefault("EnclaveName", ENCLAVE_PREFIX)
            out.append(description)
        else:
            out.append(static_description(_cid(item)))
    return tuple(out)


def _build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    env = environ.get
    parser = _Parser(
        prog="vault-parent", description="Decrypt service on the Nitro Enclaves parent instance."
    )
    parser.add_argument("--host", default=env("PARENT_HTTP_HOST", DEFAULT_HOST), help="bind address")
    parser.add_argument(
        "--port",
        type=_argument(parse_port),
        default=env("PARENT_HTTP_PORT", str(DEFAULT_PORT)),
        help="bind port",
    )
    parser.add_argument(
        "--role",
        default=env("PARENT_ROLE_NAME"),
        help="instance role name; omitted means discover it from IMDS",
    )
    parser.add_argument(
        "--skip-refresh-enclaves",
        action="store_true",
        default=_bool_env("PARENT_SKIP_REFRESH_ENCLAVES", environ),
        help="never describe or launch enclaves",
    )
    parser.add_argument(
        "--skip-run-enclaves",
        action="store_true",
        default=_bool_env("PARENT_SKIP_RUN_ENCLAVES", environ),
        help="describe enclaves but never launch them",
    )
    parser.add_argument("--imds-endpoint", default=env("PARENT_IMDS_ENDPOINT", DEFAULT_IMDS_ENDPOINT))
    parser.add_argument(
        "--imds-timeout", type=_positive_float("IMDS timeout"), default=env("PARENT_IMDS_TIMEOUT")
    )
    parser.add_argument(
        "--enclaves",
        type=_argument(parse_static_enclaves),
        default=env("PARENT_STATIC_ENCLAVES"),
        help="fixed enclave list (CIDs such as 16,17, or a JSON array); disables nitro-cli",
    )
    parser.add_argument("--eif-path", default=env("PARENT_EIF_PATH", DEFAULT_EIF_PATH))
    parser.add_argument("--nitro-cli", default=env("PARENT_NITRO_CLI", DEFAULT_NITRO_CLI))
    parser.add_argument(
        "--vault-enclaves",
        type=_count("vault enclave count", 0),
        default=env("PARENT_VAULT_ENCLAVES", str(DEFAULT_VAULT_ENCLAVES)),
        help="how many vault enclaves to keep running",
    )
    parser.add_argument(
        "--enclave-cpu-count",
        type=_count("enclave CPU count", 1),
        default=env("PARENT_ENCLAVE_CPU_COUNT", str(DEFAULT_ENCLAVE_CPU_COUNT)),
        help="vCPUs of each vault enclave launched",
    )
    parser.add_argument(
        "--enclave-memory-mib",
        type=_count("enclave memory (MiB)", MIN_ENCLAVE_MEMORY_MIB),
        default=env("PARENT_ENCLAVE_MEMORY_MIB", str(DEFAULT_ENCLAVE_MEMORY_MIB)),
        help="memory in MiB of each vault enclave launched",
    )
    parser.add_argument(
        "--refresh-interval",
        type=_positive_float("refresh interval"),
        default=env("PARENT_REFRESH_INTERVAL", str(REFRESH_ENCLAVES_INTERVAL)),
    )
    parser.add_argument(
        "--enclave-connect-timeout",
        type=_positive_float("enclave connect timeout"),
        default=env("PARENT_ENCLAVE_CONNECT_TIMEOUT", str(ENCLAVE_CONNECT_TIMEOUT)),
    )
    parser.add_argument(
        "--enclave-read-timeout",
        type=_positive_float("enclave read timeout"),
        default=env("PARENT_ENCLAVE_READ_TIMEOUT", str(ENCLAVE_READ_TIMEOUT)),
    )
    parser.add_argument(
        "--enclave-workers",
        type=_count("enclave worker count", 1),
        default=env("PARENT_ENCLAVE_WORKERS", str(ENCLAVE_WORKERS)),
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive_float("request timeout"),
        default=env("PARENT_REQUEST_TIMEOUT", str(REQUEST_TIMEOUT)),
    )
    parser.add_argument(
        "--log-level", type=_argument(parse_log_level), default=env("PARENT_LOG_LEVEL", "INFO")
    )
    return parser


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ParentConfig:
    """Build the configuration from command-line arguments and environment variables."""
    args = _build_parser(environ).parse_args(list(argv) if argv is not None else [])
    role = (args.role or "").strip() or None
    if args.vault_enclaves == 0 and not args.skip_run_enclaves:
        raise ConfigError("--vault-enclaves 0 launches nothing; use --skip-run-enclaves instead")
    try:
        transport = TransportConfig.from_env(environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return ParentConfig(
        host=args.host,
        port=args.port,
        role=role,
        skip_refresh_enclaves=args.skip_refresh_enclaves,
        skip_run_enclaves=args.skip_run_enclaves,
        imds_endpoint=args.imds_endpoint.rstrip("/"),
        imds_timeout=args.imds_timeout if args.imds_timeout is not None else IMDS_TIMEOUT,
        static_enclaves=args.enclaves,
        eif_path=args.eif_path,
        nitro_cli=args.nitro_cli,
        refresh_interval=args.refresh_interval,
        vault_enclaves=args.vault_enclaves,
        enclave_cpu_count=args.enclave_cpu_count,
        enclave_memory_mib=args.enclave_memory_mib,
        enclave_timeouts=EnclaveTimeouts(
            connect=args.enclave_connect_timeout, read=args.enclave_read_timeout
        ),
        enclave_workers=args.enclave_workers,
        request_timeout=args.request_timeout,
        log_level=args.log_level,
        transport=transport,
    )
