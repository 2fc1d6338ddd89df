"""What the supervisor knows about each part of the emulator, and what the parts share.

A component gets the components it reads as constructor arguments and reads their
typed results (``BackendComponent.backend``, ``ImageComponent.built``, ...) once they
have started; its ``needs`` are exactly those components, so the start order follows
from what each one reads. ``Context.facts`` is the JSON document published in the state
file (endpoints, table, key ARN) for clients; components write to it and never read
each other's values from it.
"""

from __future__ import annotations

import abc
import http.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from emulator.daemon.config import EmulatorConfig, StateLayout
from emulator.host.process import StartupError

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


@dataclass
class Context:
    """Shared by the components of one emulator run: the configuration and the published facts."""

    config: EmulatorConfig
    layout: StateLayout
    #: JSON values published in the state file; written by components, read by clients.
    facts: dict[str, Any] = field(default_factory=dict)


class Component(abc.ABC):
    """One row of the status table: something started, health-checked and stopped."""

    #: Short stable name (also the log file's name).
    name: str = ""
    #: A step (image assembly, provisioning) runs once and has no process of its own.
    is_step: bool = False
    #: A server thread inside the daemon (its pid is the daemon's).
    runs_in_daemon: bool = False

    def __init__(self, context: Context, *needs: Component) -> None:
        self.context = context
        self.config = context.config
        self.layout = context.layout
        #: The components this one reads; they are up before it starts.
        self.needs: tuple[str, ...] = tuple(component.name for component in needs)

    @property
    def log_path(self) -> Path:
        return self.layout.log_file(self.name)

    def prestart(self) -> None:  # noqa: B027 - optional hook; most components have nothing to prepare
        """Begin slow work that needs nothing from other components (called before any start)."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start and return once healthy; raise with a readable message otherwise."""

    def stop(self) -> None:  # noqa: B027 - steps (image, provisioning) hold nothing to release
        """Stop and release every process, port and socket; harmless when not started."""

    def health(self) -> Health:
        return Health(True, "done" if self.is_step else "")

    def address(self) -> str:
        return ""

    def pids(self) -> list[int]:
        return []

    def require(self, value: T | None) -> T:
        """``value`` if this component has produced it, else a clear error (read before start)."""
        if value is None:
            raise StartupError(f"{self.name} is not running")
        return value


def http_ok(url: str, timeout: float = 0.5, expect: int = 200) -> bool:
    """True if a GET of ``url`` answers ``expect`` within ``timeout``."""
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
