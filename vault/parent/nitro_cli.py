"""Enclave discovery and launch through ``nitro-cli`` (spec 3.5).

A background task describes the running enclaves every ``interval`` seconds, keeps
the vault enclaves (name prefix ``enclave-vault``) as the cached list and, unless told
not to, launches vault enclaves until ``vault_enclaves`` run. Unlike upstream, only
vault enclaves are counted (the ACM enclave is not ours to replace) and the missing
count never goes below zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vault.parent.config import (
    DEFAULT_ENCLAVE_CPU_COUNT,
    DEFAULT_ENCLAVE_MEMORY_MIB,
    ENCLAVE_PREFIX,
    ConfigError,
    ParentConfig,
)
from vault.parent.registry import EnclaveDescription, parse_descriptions

log = logging.getLogger(__name__)

# nitro-cli's stderr goes to the log; keep a failing command from flooding it.
_MAX_LOGGED_STDERR = 2000


class NitroCliError(Exception):
    """``nitro-cli`` could not be run, failed, timed out or printed something unreadable."""


@dataclass(frozen=True)
class NitroCli:
    """Runs the ``nitro-cli`` executable at ``path`` with a time limit per command."""

    path: str
    timeout: float

    async def _run(self, *args: str) -> bytes:
        try:
            process = await asyncio.create_subprocess_exec(
                self.path,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise NitroCliError(f"cannot run {self.path}: {exc.strerror or exc}") from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise NitroCliError(f"{self.path} {args[0]} did not finish within {self.timeout:g} s") from None
        finally:
            if process.returncode is None:
                # Cancelled (shutdown): do not leave the child running.
                process.kill()
        if process.returncode != 0:
            text = stderr.decode("utf-8", "replace").strip()[:_MAX_LOGGED_STDERR]
            raise NitroCliError(f"error running command: {args[0]} exited with {process.returncode}: {text}")
        return stdout

    async def describe_enclaves(self) -> list[EnclaveDescription]:
        stdout = await self._run("describe-enclaves")
        try:
            items = json.loads(stdout)
        except ValueError:
            raise NitroCliError("describe-enclaves printed something that is not JSON") from None
        if not isinstance(items, list):
            raise NitroCliError("describe-enclaves did not print a JSON array")
        return parse_descriptions(items)

    async def run_enclave(self, eif_path: str, *, cpu_count: int, memory_mib: int) -> None:
        await self._run(
            "run-enclave",
            "--eif-path",
            eif_path,
            "--cpu-count",
            str(cpu_count),
            "--memory",
            str(memory_mib),
        )


def missing_enclaves(listed: Sequence[EnclaveDescription], wanted: int) -> int:
    """How many vault enclaves to launch: never negative, whatever else runs."""
    running = sum(1 for enclave in listed if enclave.is_vault_enclave)
    return max(0, wanted - running)


class NitroCliRegistry:
    """Keeps the vault enclaves ``nitro-cli describe-enclaves`` reports, launching missing ones."""

    def __init__(
        self,
        cli: NitroCli,
        *,
        eif_path: str,
        interval: float,
        vault_enclaves: int,
        skip_refresh: bool,
        skip_run: bool,
        cpu_count: int = DEFAULT_ENCLAVE_CPU_COUNT,
        memory_mib: int = DEFAULT_ENCLAVE_MEMORY_MIB,
    ) -> None:
        self.cli = cli
        self.eif_path = eif_path
        self.cpu_count = cpu_count
        self.memory_mib = memory_mib
        self.interval = interval
        self.vault_enclaves = vault_enclaves
        self.skip_refresh = skip_refresh
        self.skip_run = skip_run
        self._enclaves: tuple[EnclaveDescription, ...] = ()
        self._task: asyncio.Task[None] | None = None
        if not skip_refresh and not skip_run and not Path(eif_path).name.startswith(ENCLAVE_PREFIX):
            # nitro-cli names an enclave after its EIF file, so enclaves launched from any
            # other file would never be counted and a new one would be launched every cycle.
            raise ConfigError(
                f"the EIF file name must start with {ENCLAVE_PREFIX!r} "
                "so that the enclaves launched from it are recognised"
            )

    @classmethod
    def from_config(cls, config: ParentConfig) -> NitroCliRegistry:
        return cls(
            NitroCli(config.nitro_cli, config.nitro_cli_timeout),
            eif_path=config.eif_path,
            interval=config.refresh_interval,
            vault_enclaves=config.vault_enclaves,
            skip_refresh=config.skip_refresh_enclaves,
            skip_run=config.skip_run_enclaves,
            cpu_count=config.enclave_cpu_count,
            memory_mib=config.enclave_memory_mib,
        )

    def enclaves(self) -> Sequence[EnclaveDescription]:
        return self._enclaves

    async def refresh(self) -> None:
        """One cycle: describe, launch what is missing, cache the vault enclaves."""
        listed = await self.cli.describe_enclaves()
        if not self.skip_run:
            launched = 0
            for _ in range(missing_enclaves(listed, self.vault_enclaves)):
                await self.cli.run_enclave(
                    self.eif_path, cpu_count=self.cpu_count, memory_mib=self.memory_mib
                )
                launched += 1
            if launched:
                log.info("launched vault enclaves", extra={"fields": {"count": launched}})
                # Describe again so new enclaves serve now rather than one interval later.
                listed = await self.cli.describe_enclaves()
        self._enclaves = tuple(enclave for enclave in listed if enclave.is_vault_enclave)

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except NitroCliError as exc:
                log.error("enclave refresh failed", extra={"fields": {"error": str(exc)}})
            except Exception:
                # The loop must outlive any one bad cycle; log.exception keeps the type only.
                log.exception("enclave refresh failed unexpectedly")
            else:
                log.debug(
                    "enclaves refreshed",
                    extra={"fields": {"cids": [e.enclave_cid for e in self._enclaves]}},
                )
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self.skip_refresh or self._task is not None:
            return
        self._task = asyncio.create_task(self._loop(), name="enclave-refresh")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
