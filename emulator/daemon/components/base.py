"""What the supervisor knows about each part of the emulator."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.daemon.config import EmulatorConfig


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


@dataclass
class Context:
    """Shared by the components of one emulator run.

    ``facts`` are JSON values published in the state file (endpoints, table, key
    ARN); ``objects`` are in-process objects one component hands to another (the
    backend, the measurements, the PKI).
    """

    config: EmulatorConfig
    facts: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)


class Component(abc.ABC):
    """One row of the status table: something started, health-checked and stopped."""

    #: Short stable name (also the log file's name).
    name: str = ""
    #: Components that must be up before this one starts.
    needs: tuple[str, ...] = ()
    #: A step (image assembly, provisioning) runs once and has no process of its own.
    is_step: bool = False
    #: A server thread inside the daemon (its pid is the daemon's).
    runs_in_daemon: bool = False

    def __init__(self, context: Context) -> None:
        self.context = context
        self.config = context.config
        self.layout = context.config.layout

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
