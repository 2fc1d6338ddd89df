"""``vault-emulator``: run the vault on one machine, no AWS account, no Nitro hardware.

vault-emulator up [--backend moto|localstack] [--enclave-runtime namespace|container]
                  [--state-dir DIR] [--port N] [--localstack-python PATH] [--persist]
                  [--lambda-concurrency N] [--reserved-concurrency N] [--enclave SPEC]
                  [--enclave-devices | --enclave-uds]
                  [--production-limits [--vsock-proxy-workers N] [--kms-quota-scale F]]
vault-emulator status [--json]
vault-emulator logs [COMPONENT] [-f]
vault-emulator down
vault-emulator reset      (delete what up --persist keeps)
vault-emulator demo
vault-emulator doctor [--backend ...] [--enclave-runtime ...] [--port N]
vault-emulator fault list | active | clear | NAME on [KEY=VALUE ...] | NAME off

``up`` prints its progress (each component with its seconds, and the slow steps inside
them) to stderr and the result to stdout. Its exit codes: 0 running (or already
running), 1 failed to start, 2 a bad option (e.g. an unusable --localstack-python, or an
--enclave spec refused with the key named: ``[enclave-spec-invalid] KEY: ...``),
4 the --port is in use (found before anything started).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from emulator.aws.backends.config import BACKEND_KINDS, LOCALSTACK_PYTHON_ENV
from emulator.daemon import lifecycle
from emulator.daemon.config import (
    DEFAULT_GATEWAY_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_VSOCK_PROXY_WORKERS,
    MAX_LAMBDA_CONCURRENCY,
    RUNTIMES,
    EmulatorConfig,
    StateLayout,
    default_lambda_concurrency,
)
from emulator.daemon.enclave_spec import EnclaveSpecError
from emulator.daemon.state import EmulatorState
from emulator.faults.catalogue import CATALOGUE, FaultController, FaultError, describe
from emulator.host.process import tail_file
from emulator.host.progress import ProgressPrinter
from emulator.tools.demo import run_demo
from emulator.tools.doctor import DoctorConfig, exit_code, report, run_checks
from vault.api.reveal_policy import RevealPolicyError

#: The components that write a log of their own (the rest run inside the supervisor).
LOG_COMPONENTS = ("supervisor", "gateway", "parent", "enclave")
#: Bounds ``logs -f`` so a forgotten follower does not run forever.
FOLLOW_LIMIT_SECONDS = 24 * 3600
#: ``up``'s exit codes besides 0 and 1 (2 is also argparse's for a bad command line).
EXIT_BAD_OPTION = 2
EXIT_PORT_IN_USE = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vault-emulator",
        description="Run the nitro-vault API, parent and enclave locally "
        "with emulated AWS and Nitro services.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(DEFAULT_STATE_DIR),
        help=f"where the emulator keeps its state, logs and sockets (default: ./{DEFAULT_STATE_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", parents=[common], help="start the emulator in the background")
    _start_options(up)
    up.add_argument(
        "--persist",
        action="store_true",
        help="keep vaults, audit, keys and the PKI across down and up (clear them with reset)",
    )
    up.add_argument(
        "--enclave",
        type=Path,
        metavar="SPEC",
        help="run the enclave an enclave spec (TOML) describes instead of the vault's; the vault's "
        "parent and API are not started (see README, 'Bring your own enclave')",
    )
    up.add_argument(
        "--reveal-policy",
        type=Path,
        metavar="FILE",
        help="the API's reveal policy (JSON; who may receive which fields and expressions), "
        "deployed as the CDK app's vault:revealPolicy is (default: none, every caller gets everything)",
    )
    commands.add_parser("down", parents=[common], help="stop the emulator and everything it started")
    status = commands.add_parser("status", parents=[common], help="show components, addresses, pids, health")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    logs = commands.add_parser("logs", parents=[common], help="show a component's log (all when omitted)")
    logs.add_argument(
        "component", nargs="?", choices=LOG_COMPONENTS, help=f"one of {', '.join(LOG_COMPONENTS)}"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=40, help="lines of history to show (default 40)")
    demo = commands.add_parser(
        "demo", parents=[common], help="walk through the vault (starts the emulator if needed)"
    )
    _start_options(demo)
    fault = commands.add_parser(
        "fault",
        parents=[common],
        help="switch a fault of the running emulator on or off (list: the catalogue)",
    )
    fault.add_argument("name", help="a fault name, or list, active, clear")
    fault.add_argument("switch", nargs="?", choices=("on", "off"), help="on or off (for a fault name)")
    fault.add_argument("params", nargs="*", metavar="KEY=VALUE", help="fault parameters (see fault list)")
    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check what the runtimes and backends need on this machine (takes up's options)",
    )
    _start_options(doctor)
    commands.add_parser(
        "reset",
        parents=[common],
        help="delete the state up --persist keeps: vaults, audit, keys, PKI (not while running)",
    )
    return parser


def _start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=BACKEND_KINDS, default="moto", help="AWS backend (default: moto)"
    )
    parser.add_argument(
        "--enclave-runtime",
        choices=RUNTIMES,
        default="namespace",
        help="how the enclave is isolated: Linux namespaces or a container (default: namespace)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_GATEWAY_PORT,
        help=f"API gateway port on 127.0.0.1; 0 picks a free one (default: {DEFAULT_GATEWAY_PORT})",
    )
    parser.add_argument(
        "--sigv4", action="store_true", help="require SigV4-signed requests (test principals)"
    )
    parser.add_argument(
        "--lambda-concurrency",
        type=int,
        default=default_lambda_concurrency(),
        metavar="N",
        help="API Lambda execution environments (processes) at most; beyond them an invocation "
        "waits for a free one (default: the number of cores)",
    )
    parser.add_argument(
        "--reserved-concurrency",
        type=int,
        metavar="N",
        help="the API function's reserved concurrency (at most --lambda-concurrency): an invocation "
        "beyond it is throttled, as Lambda throttles it, and API Gateway answers 500",
    )
    parser.add_argument(
        "--production-limits",
        action="store_true",
        help="reproduce production's bottlenecks: the vsock-proxy's worker limit (nitro-cli's "
        "--num_workers; a connection beyond it waits) and KMS's request quotas for the "
        "cryptographic operations in the emulated Region's tier (ThrottlingException past them)",
    )
    parser.add_argument(
        "--vsock-proxy-workers",
        type=int,
        default=DEFAULT_VSOCK_PROXY_WORKERS,
        metavar="N",
        help="with --production-limits: the vsock-proxy's --num_workers "
        f"(default: {DEFAULT_VSOCK_PROXY_WORKERS}, nitro-cli's)",
    )
    parser.add_argument(
        "--kms-quota-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="with --production-limits: multiply every KMS request quota by F (default: 1)",
    )
    # Unset (None), the runtime decides: device mode for namespace, Unix sockets for container.
    devices = parser.add_mutually_exclusive_group()
    devices.add_argument(
        "--enclave-devices",
        action="store_true",
        default=None,
        help="run the enclave and the parent with their production configuration (/dev/nsm, AF_VSOCK), "
        "led to the emulated NSM and vsock by a preload library built with the system C compiler "
        "(default with --enclave-runtime namespace)",
    )
    devices.add_argument(
        "--enclave-uds",
        dest="enclave_devices",
        action="store_false",
        default=None,
        help="configure the enclave and the parent for the emulator's Unix sockets instead "
        "(VAULT_NSM=uds:..., VAULT_VSOCK_TRANSPORT=uds; default with --enclave-runtime container)",
    )
    parser.add_argument(
        "--debug-mode",
        action="store_true",
        help="run the enclave as in debug mode: PCR0, 1, 2 and 8 read zero, so the key policy refuses it",
    )
    from_env = os.environ.get(LOCALSTACK_PYTHON_ENV)
    parser.add_argument(
        "--localstack-python",
        type=Path,
        default=Path(from_env) if from_env else None,
        metavar="PATH",
        help="the Python >= 3.13 that LocalStack's virtualenv is built on (--backend localstack; "
        f"default: ${LOCALSTACK_PYTHON_ENV}, else the oldest found on PATH, pyenv or uv)",
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        state_dir=args.state_dir,
        backend=args.backend,
        enclave_runtime=args.enclave_runtime,
        port=args.port,
        sigv4=args.sigv4,
        lambda_concurrency=getattr(args, "lambda_concurrency", default_lambda_concurrency()),
        reserved_concurrency=getattr(args, "reserved_concurrency", None),
        debug_mode=args.debug_mode,
        production_limits=getattr(args, "production_limits", False),
        vsock_proxy_workers=getattr(args, "vsock_proxy_workers", DEFAULT_VSOCK_PROXY_WORKERS),
        kms_quota_scale=getattr(args, "kms_quota_scale", 1.0),
        enclave_devices=getattr(args, "enclave_devices", None),
        persist=getattr(args, "persist", False),
        localstack_python=args.localstack_python,
        enclave_spec=getattr(args, "enclave", None),
        reveal_policy=getattr(args, "reveal_policy", None),
    )


def format_table(state: EmulatorState) -> str:
    rows = [("COMPONENT", "ADDRESS", "PID", "HEALTH")]
    for component in state.components:
        pids = ",".join(str(pid) for pid in component.pids) or "-"
        health = "ok" if component.healthy else "DOWN"
        if component.detail:
            health += f" ({component.detail})"
        rows.append((component.name, component.address or "-", pids, health))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    return "\n".join(lines)


def cmd_up(args: argparse.Namespace, layout: StateLayout) -> int:
    try:
        config = config_from_args(args)
    except (EnclaveSpecError, RevealPolicyError) as exc:
        # Refused before anything starts.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_OPTION
    spec = config.spec
    with ProgressPrinter(sys.stderr) as progress:
        progress.line(
            f"starting the {'vault ' if spec.vault_api else ''}emulator ({config.backend} backend, "
            f"{config.enclave_runtime} enclave{'' if spec.vault_api else ' ' + spec.name}) ..."
        )
        try:
            state = lifecycle.up(config, echo=progress.line, on_step=progress)
        except lifecycle.AlreadyRunning as exc:
            print(str(exc))
            return 0
        except lifecycle.PortInUse as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_PORT_IN_USE
        except lifecycle.InvalidInterpreter as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_OPTION
        except lifecycle.EmulatorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            print("check this machine's prerequisites: vault-emulator doctor (same options)", file=sys.stderr)
            return 1
    print()
    print(format_table(state))
    print()
    print(f"ready in {state.startup_seconds:.2f} s")
    if spec.vault_api:
        print(f"API:     {state.api_url}")
        print(f"Swagger: {state.api_url}/swagger")
    else:
        ports = ", ".join(str(port) for port in spec.ports)
        print(f"enclave: {spec.name} on CID {config.enclave_cid}, vsock ports {ports}")
        print(f"vsock:   {layout.vsock_dir} (vsock-<cid>-<port>.sock)")
        print(f"PCR0:    {state.facts.get('pcr0', '')}")
    print(f"stop with: vault-emulator down --state-dir {args.state_dir}")
    if config.persist:
        print(
            "persisting: vaults and keys survive down; "
            f"clear them with: vault-emulator reset --state-dir {args.state_dir}"
        )
    return 0


def cmd_down(args: argparse.Namespace, layout: StateLayout) -> int:
    began = time.monotonic()
    if lifecycle.down(layout):
        print(f"stopped in {time.monotonic() - began:.2f} s")
    else:
        print("the emulator was not running")
    return 0


def cmd_status(args: argparse.Namespace, layout: StateLayout) -> int:
    state = lifecycle.status(layout)
    if state is None:
        print(f"no emulator state in {layout.root}")
        return 3
    if args.json:
        print(json.dumps(state.to_json(), indent=2, sort_keys=True))
    else:
        print(f"phase: {state.phase}   backend: {state.backend}   enclave: {state.enclave_runtime}")
        if state.api_url and state.phase == "running":
            # A stopped emulator's URL answers nothing: printing it would invite a dead request.
            print(f"API:   {state.api_url}")
        if state.error:
            print(f"error: {state.error}")
        print()
        print(format_table(state))
    return 0 if state.phase == "running" and all(c.healthy for c in state.components) else 3


def cmd_logs(args: argparse.Namespace, layout: StateLayout) -> int:
    if args.component:
        paths = [layout.log_file(args.component)]
        if not paths[0].exists():
            known = sorted(p.stem for p in layout.logs.glob("*.log"))
            print(f"no log for {args.component!r}; known: {', '.join(known) or 'none'}", file=sys.stderr)
            return 2
    else:
        paths = sorted(layout.logs.glob("*.log"))
    for path in paths:
        text = tail_file(path, args.lines)
        prefix = f"{path.stem} | " if len(paths) > 1 else ""
        for line in text.splitlines():
            print(prefix + line)
    if args.follow:
        return _follow(paths)
    return 0


def _follow(paths: Sequence[Path]) -> int:
    offsets = {path: path.stat().st_size if path.exists() else 0 for path in paths}
    deadline = time.monotonic() + FOLLOW_LIMIT_SECONDS
    try:
        while time.monotonic() < deadline:
            for path in paths:
                try:
                    with open(path, "rb") as handle:
                        handle.seek(offsets[path])
                        data = handle.read()
                except OSError:
                    continue
                if data:
                    offsets[path] += len(data)
                    prefix = f"{path.stem} | " if len(paths) > 1 else ""
                    for line in data.decode("utf-8", "replace").splitlines():
                        print(prefix + line, flush=True)
            time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace, layout: StateLayout) -> int:
    return run_demo(config_from_args(args))


def cmd_reset(args: argparse.Namespace, layout: StateLayout) -> int:
    try:
        removed = lifecycle.reset(layout)
    except lifecycle.StillRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if removed:
        print(f"removed the persisted state in {layout.root}: " + ", ".join(p.name for p in removed))
    else:
        print(f"no persisted state in {layout.root}")
    return 0


def cmd_doctor(args: argparse.Namespace, layout: StateLayout) -> int:
    config = DoctorConfig(
        backend=args.backend,
        enclave_runtime=args.enclave_runtime,
        port=args.port,
        state_dir=layout.root,
        localstack_python=args.localstack_python,
        enclave_devices=args.enclave_devices,
    )
    results = run_checks(config)
    print(report(config, results))
    return exit_code(results)


def cmd_fault(args: argparse.Namespace, layout: StateLayout) -> int:
    if args.name == "list":
        print("\n".join(describe(fault.spec) for fault in CATALOGUE.values()))
        return 0
    controller = FaultController(layout)
    try:
        if args.name == "active":
            print(json.dumps(controller.active(), indent=2, sort_keys=True))
        elif args.name == "clear":
            print(json.dumps(controller.clear(), indent=2, sort_keys=True))
        elif args.switch is None:
            print("say on or off: vault-emulator fault NAME on|off [KEY=VALUE ...]", file=sys.stderr)
            return 2
        elif args.switch == "on":
            params = dict(item.partition("=")[::2] for item in args.params)
            print(json.dumps(controller.enable(args.name, **params), indent=2, sort_keys=True))
        else:
            print(json.dumps(controller.disable(args.name), indent=2, sort_keys=True))
    except FaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: the emulator in {args.state_dir} is not answering ({exc})", file=sys.stderr)
        return 3
    return 0


def concurrency_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--lambda-concurrency`` and ``--reserved-concurrency``, if anything."""
    concurrency = getattr(args, "lambda_concurrency", None)
    reserved = getattr(args, "reserved_concurrency", None)
    if concurrency is not None and not 1 <= concurrency <= MAX_LAMBDA_CONCURRENCY:
        return f"--lambda-concurrency must be within 1..{MAX_LAMBDA_CONCURRENCY}"
    if reserved is not None and not 1 <= reserved <= (concurrency or 1):
        return f"--reserved-concurrency must be within 1..{concurrency} (--lambda-concurrency)"
    workers = getattr(args, "vsock_proxy_workers", None)
    if workers is not None and workers < 1:
        return "--vsock-proxy-workers must be at least 1"
    scale = getattr(args, "kms_quota_scale", None)
    if scale is not None and not scale > 0:
        return "--kms-quota-scale must be positive"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = concurrency_problem(args)
    if problem is not None:
        parser.error(problem)  # exit status 2, as for any bad option
    # The one place the CLI turns --state-dir into the state directory's layout.
    layout = StateLayout(args.state_dir.absolute())
    handlers: dict[str, Callable[[argparse.Namespace, StateLayout], int]] = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "logs": cmd_logs,
        "demo": cmd_demo,
        "fault": cmd_fault,
        "doctor": cmd_doctor,
        "reset": cmd_reset,
    }
    return handlers[args.command](args, layout)


if __name__ == "__main__":
    sys.exit(main())
