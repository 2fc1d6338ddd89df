"""The enclave process's configuration, read from its environment.

Variables (all optional):

=================================  ==========================================  =======
``VAULT_VSOCK_TRANSPORT`` etc.     transport, see :class:`TransportConfig`      vsock
``VAULT_ENCLAVE_PORT``             vsock port to listen on                      5050
``VAULT_ENCLAVE_MAX_CONNECTIONS``  connections served at once                   32
``VAULT_ENCLAVE_READ_TIMEOUT``     seconds to receive a whole request           10
``VAULT_ENCLAVE_WRITE_TIMEOUT``    seconds to send a reply                      10
``VAULT_ENCLAVE_LOG_LEVEL``        DEBUG, INFO, WARNING or ERROR                INFO
=================================  ==========================================  =======
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from vault.common.transport import ENCLAVE_PORT, TransportConfig
from vault.enclave.server import MAX_CONNECTIONS, ServerConfig

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_MAX_VSOCK_PORT = 0xFFFFFFFE  # vsock ports are 32-bit; 0xFFFFFFFF is VMADDR_PORT_ANY


class ConfigError(ValueError):
    """An environment variable has an unusable value; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw[:32]!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw[:32]!r}") from None
    if not 0 < value <= 3600:
        raise ConfigError(f"{name} must be more than 0 and at most 3600 seconds, not {value:g}")
    return value


@dataclass(frozen=True)
class EnclaveConfig:
    transport: TransportConfig = field(default_factory=TransportConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EnclaveConfig:
        env = os.environ if environ is None else environ
        try:
            transport = TransportConfig.from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        defaults = ServerConfig()
        server = ServerConfig(
            port=_int(env, "VAULT_ENCLAVE_PORT", ENCLAVE_PORT, 1, _MAX_VSOCK_PORT),
            max_connections=_int(env, "VAULT_ENCLAVE_MAX_CONNECTIONS", MAX_CONNECTIONS, 1, 1024),
            read_timeout=_seconds(env, "VAULT_ENCLAVE_READ_TIMEOUT", defaults.read_timeout),
            write_timeout=_seconds(env, "VAULT_ENCLAVE_WRITE_TIMEOUT", defaults.write_timeout),
        )
        level = env.get("VAULT_ENCLAVE_LOG_LEVEL", "").strip().upper() or "INFO"
        if level not in _LOG_LEVELS:
            raise ConfigError(
                f"VAULT_ENCLAVE_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {level!r}"
            )
        return cls(transport=transport, server=server, log_level=level)
