"""Packaging the product code for Lambda without Docker.

The API function's asset is a copy of the ``vault`` packages the API imports, made by a
local bundler at synth time (no network, no container). Its third-party libraries come
from a layer directory built beforehand for arm64/Python 3.13 by
``python -m vault_cdk.build lambda-deps``, so synthesis itself never reaches a package
index.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .config import REPO_ROOT

#: What the API function imports from this repository (the enclave and parent stay out).
API_SOURCES = ("vault/__init__.py", "vault/common", "vault/infra", "vault/api")
API_HANDLER = "vault.api.handler.lambda_handler"
API_HANDLER_FILE = "vault/api/handler.py"
RUNTIME = lambda_.Runtime.PYTHON_3_13
#: Never ship interpreter caches of the build machine.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo"]
_SKIP_PARTS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


class PackagingError(RuntimeError):
    """The product code or its dependencies are not where the deployment expects them."""


def copy_sources(source_root: Path, sources: Sequence[str], destination: Path) -> list[str]:
    """Copy ``sources`` (files or package directories) under ``destination``; return what was copied."""
    copied: list[str] = []
    for entry in sources:
        path = source_root / entry
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        else:
            raise PackagingError(f"{entry} is missing under {source_root}")
        for file in files:
            relative = file.relative_to(source_root)
            if _SKIP_PARTS.intersection(relative.parts) or file.suffix in _SKIP_SUFFIXES:
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
            copied.append(relative.as_posix())
    return copied


@jsii.implements(ILocalBundling)
class ProductCodeBundling:
    """Local bundler: copies the API's packages into the asset directory."""

    def __init__(self, source_root: Path, sources: Sequence[str], handler_file: str) -> None:
        self._source_root = source_root
        self._sources = tuple(sources)
        self._handler_file = handler_file

    def try_bundle(self, output_dir: str, *_args: Any, **_kwargs: Any) -> bool:
        # A function whose handler module is missing would deploy and then fail every call.
        if not (self._source_root / self._handler_file).is_file():
            raise PackagingError(f"the API handler {self._handler_file} is missing under {self._source_root}")
        copy_sources(self._source_root, self._sources, Path(output_dir))
        return True


def api_code() -> lambda_.Code:
    """The API function's code asset, bundled locally from this repository."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "vault"),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Only used if local bundling declined, which it never does: it copies or raises.
            image=RUNTIME.bundling_image,
            local=ProductCodeBundling(REPO_ROOT, API_SOURCES, API_HANDLER_FILE),
        ),
    )


def dependency_layer_code(directory: Path) -> lambda_.Code:
    """The prebuilt dependency layer (``<directory>/python/...``)."""
    if not (directory / "python").is_dir():
        raise PackagingError(
            f"the API dependency layer {directory} has no python/ directory; build it with "
            "`python -m vault_cdk.build lambda-deps` (needs the package index once), "
            "or point vault:lambdaDependencies at a prebuilt one"
        )
    return lambda_.Code.from_asset(str(directory), exclude=ASSET_EXCLUDES)
