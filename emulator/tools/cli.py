"""``vault-emulator``: run the vault on one machine, no AWS account, no Nitro hardware.

vault-emulator up [--backend moto|localstack] [--enclave-runtime namespace|container]
                  [--state-dir DIR] [--port N]
vault-emulator status [--json]
vault-emulator logs [COMPONENT] [-f]
vault-emulator down
vault-emulator demo
vault-emulator fault list | active | clear | NAME on [KEY=VALUE ...] | NAME off
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from emulator.daemon.config import BACKENDS, DEFAULT_GATEWAY_PORT, DEFAULT_STATE_DIR, RUNTIMES, EmulatorConfig
from emulator.daemon.state import EmulatorState

#: Bounds ``logs -f`` so a forgotten follower does not run forever.
FOLLOW_LIMIT_SECONDS = 24 * 3600


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
    commands.add_parser("down", parents=[common], help="stop the emulator and everything it started")
    status = commands.add_parser("status", parents=[common], help="show components, addresses, pids, health")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    logs = commands.add_parser("logs", parents=[common], help="show a component's log (all when omitted)")
    logs.add_argument("component", nargs="?", help="e.g. gateway, parent, enclave, backend, supervisor")
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
    return parser


def _start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="moto", help="AWS backend (default: moto)")
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


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        state_dir=args.state_dir,
        backend=args.backend,
        enclave_runtime=args.enclave_runtime,
        port=args.port,
        sigv4=args.sigv4,
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


def cmd_up(args: argparse.Namespace) -> int:
    from emulator.daemon import lifecycle

    config = config_from_args(args)
    print(f"starting the vault emulator ({config.backend} backend, {config.enclave_runtime} enclave) ...")
    try:
        state = lifecycle.up(config, echo=print)
    except lifecycle.AlreadyRunning as exc:
        print(str(exc))
        return 0
    except lifecycle.EmulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_table(state))
    print()
    print(f"ready in {state.startup_seconds:.2f} s")
    print(f"API:     {state.api_url}")
    print(f"Swagger: {state.api_url}/swagger")
    print(f"stop with: vault-emulator down --state-dir {args.state_dir}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from emulator.daemon import lifecycle

    began = time.monotonic()
    if lifecycle.down(args.state_dir):
        print(f"stopped in {time.monotonic() - began:.2f} s")
    else:
        print("the emulator was not running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from emulator.daemon import lifecycle

    state = lifecycle.status(args.state_dir)
    if state is None:
        print(f"no emulator state in {args.state_dir.absolute()}")
        return 3
    if args.json:
        print(json.dumps(state.to_json(), indent=2, sort_keys=True))
    else:
        print(f"phase: {state.phase}   backend: {state.backend}   enclave: {state.enclave_runtime}")
        if state.api_url:
            print(f"API:   {state.api_url}")
        if state.error:
            print(f"error: {state.error}")
        print()
        print(format_table(state))
    return 0 if state.phase == "running" and all(c.healthy for c in state.components) else 3


def cmd_logs(args: argparse.Namespace) -> int:
    from emulator.daemon.config import StateLayout
    from emulator.host.process import tail_file

    layout = StateLayout(args.state_dir.absolute())
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


def cmd_demo(args: argparse.Namespace) -> int:
    from emulator.tools.demo import run_demo

    return run_demo(config_from_args(args))


def cmd_fault(args: argparse.Namespace) -> int:
    from emulator.faults.catalogue import CATALOGUE, FaultController, FaultError, describe

    if args.name == "list":
        print("\n".join(describe(spec) for spec in CATALOGUE.values()))
        return 0
    controller = FaultController(args.state_dir)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "logs": cmd_logs,
        "demo": cmd_demo,
        "fault": cmd_fault,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
