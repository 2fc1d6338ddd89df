"""``python -m emulator.host.system``: install and start what the emulator needs on this machine.

Exports go to stdout, progress and timings to stderr (a line per step with its elapsed
time; one live line on a terminal), so CI can run::

    eval "$(python -m emulator.host.system ensure docker base-image)"
    ...
    python -m emulator.host.system stop dockerd

The Docker engine started here and the base image it holds live in the shared cache
(``$NITRO_VAULT_EMULATOR_CACHE_DIR``, else ``~/.cache/nitro-vault-emulator``), as the
emulator's container runtime expects: the image is built once per machine, not once
per state directory.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from emulator.aws.backends import BackendConfig, BackendError, create_backend
from emulator.aws.backends.config import default_cache_dir
from emulator.host.progress import ProgressPrinter, set_sink, step
from emulator.host.system.apt import AptResult
from emulator.host.system.base_image import BaseImageSpec, ensure_base_image
from emulator.host.system.dockerd import (
    DockerEngine,
    DockerEngineConfig,
    engine_environment,
    ensure_engine,
    running_engine,
)
from emulator.host.system.errors import SystemSetupError
from emulator.host.system.tools import TOOLS, ensure_tool

STATE_DIR_ENV = "NITRO_VAULT_EMULATOR_STATE_DIR"
TARGETS = (*TOOLS, "base-image", "localstack")
BASE_IMAGE_ENV = "NITRO_VAULT_BASE_IMAGE"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _export(variables: dict[str, str]) -> None:
    for name, value in variables.items():
        print(f"export {name}={shlex.quote(value)}", flush=True)


def _report_apt(name: str, result: AptResult | None) -> None:
    if result is None:
        _say(f"{name}: present")
    else:
        _say(f"{name}: installed {' '.join(result.installed)} in {result.seconds:.1f} s")


def _engine_config() -> DockerEngineConfig:
    """Our dockerd, in the shared cache (where the emulator's enclave component looks too)."""
    return DockerEngineConfig(state_dir=default_cache_dir())


def _ensure_docker() -> str:
    _report_apt("docker", ensure_tool("docker"))
    status = ensure_engine(_engine_config())
    verb = "started" if status.started else "found running"
    _say(f"docker engine: {verb} at {status.docker_host} in {status.seconds:.1f} s")
    _export(status.environment)
    return status.docker_host


def _ensure_base_image(docker_host: str, mirror: str | None, rebuild: bool) -> None:
    spec = BaseImageSpec(mirror=mirror)
    result = ensure_base_image(spec, docker_host, default_cache_dir() / "base-image", rebuild=rebuild)
    if result.built:
        _say(f"base image {result.name}: built from {result.mirror} in {result.seconds:.1f} s")
    else:
        _say(f"base image {result.name}: present")
    _export({BASE_IMAGE_ENV: result.name})


def _ensure_localstack(state_dir: Path) -> None:
    _report_apt("java", ensure_tool("java"))
    _report_apt("node", ensure_tool("node"))
    backend = create_backend(BackendConfig(kind="localstack", state_dir=state_dir / "backend"))
    began = time.monotonic()
    with step("localstack: virtualenv and DynamoDB Local in the cache"):
        backend.prepare()
    _say(f"localstack: installed into {backend.config.cache_dir} in {time.monotonic() - began:.1f} s")


def ensure(targets: Sequence[str], state_dir: Path, mirror: str | None, rebuild: bool) -> None:
    docker_host: str | None = None
    for target in targets:
        if target == "docker":
            docker_host = _ensure_docker()
        elif target == "base-image":
            if docker_host is None:
                docker_host = _ensure_docker()
            _ensure_base_image(docker_host, mirror, rebuild)
        elif target == "localstack":
            _ensure_localstack(state_dir)
        else:
            _report_apt(target, ensure_tool(target))


def _stop_dockerd() -> None:
    began = time.monotonic()
    if DockerEngine(_engine_config()).stop():
        _say(f"dockerd: stopped in {time.monotonic() - began:.1f} s")
    else:
        _say("dockerd: not running (no live pid in its pid file)")


def _print_env() -> None:
    host = running_engine(_engine_config())
    if host is None:
        raise SystemSetupError("no Docker engine answers; run `python -m emulator.host.system ensure docker`")
    _export(engine_environment(host))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator.host.system",
        description="Install and start what the emulator needs on this machine (exports on stdout).",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get(STATE_DIR_ENV, ".emulator")),
        help=f"the emulator's state directory, for LocalStack's install logs (default: ${STATE_DIR_ENV} "
        "or .emulator); the Docker engine and the base image live in the shared cache",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ensure_parser = commands.add_parser("ensure", help="install (and start) what is missing")
    ensure_parser.add_argument(
        "targets",
        nargs="+",
        choices=(*TARGETS, "all"),
        metavar="TARGET",
        help=f"one or more of: {', '.join(TARGETS)}, all",
    )
    ensure_parser.add_argument("--mirror", help="Debian mirror for the base image (default: apt's)")
    ensure_parser.add_argument("--rebuild", action="store_true", help="rebuild the base image")
    stop_parser = commands.add_parser("stop", help="stop what ensure started")
    stop_parser.add_argument("what", choices=("dockerd",))
    commands.add_parser("env", help="print the exports for the running Docker engine")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    state_dir: Path = arguments.state_dir.absolute()
    actions: dict[str, Callable[[], None]] = {
        "ensure": lambda: ensure(
            TARGETS if "all" in arguments.targets else arguments.targets,
            state_dir,
            arguments.mirror,
            arguments.rebuild,
        ),
        "stop": _stop_dockerd,
        "env": _print_env,
    }
    with ProgressPrinter(sys.stderr) as printer:
        previous = set_sink(printer)
        try:
            actions[arguments.command]()
        except (SystemSetupError, BackendError) as exc:
            _say(f"error: {exc}")
            return 1
        finally:
            set_sink(previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
