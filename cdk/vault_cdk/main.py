"""Entry point of ``cdk/app.py``.

Run by the CDK CLI (``cdk synth``, ``cdk deploy``), the app takes its context from the
CLI. Run directly (``python cdk/app.py -c vault:account=... --outdir DIR``), it reads
the context of ``cdk.json`` and ``cdk.context.json`` itself, applies the ``-c`` overrides
and synthesizes without the CLI, which is how the nox session checks the app offline.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from .config import CDK_DIR
from .node import prefer_wheel_node


def _value(text: str) -> Any:
    # Like the CDK CLI, values stay strings; lists and objects may be given as JSON.
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _direct_context(pairs: Sequence[str]) -> dict[str, Any]:
    context: dict[str, Any] = json.loads((CDK_DIR / "cdk.json").read_text(encoding="utf-8")).get(
        "context", {}
    )
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"-c expects KEY=VALUE, got {pair!r}")
        context[key] = _value(value)
    return context


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="app.py", description="Synthesize the nitro-vault deployment.")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--outdir", help="cloud assembly directory (direct runs only)")
    args = parser.parse_args(argv)

    prefer_wheel_node()
    # Imported only now: importing aws_cdk starts jsii's Node, which must be the one chosen above.
    from aws_cdk import App

    from .application import build  # imports aws_cdk too, so the same reason holds

    under_cli = "CDK_OUTDIR" in os.environ or "CDK_CONTEXT_JSON" in os.environ
    if under_cli:
        app = App()
    else:
        app = App(context=_direct_context(args.context), outdir=args.outdir or str(CDK_DIR / "cdk.out"))
    build(app)
    app.synth()
