"""Packaging the product code for Lambda without Docker.

The API function's asset is a copy of the API tier's file set
(:data:`vault.infra.artifacts.API`), made by a local bundler at synth time (no network, no
container). Its third-party libraries come from a layer directory built beforehand for
arm64/Python 3.13 by ``python -m vault_cdk.build lambda-deps``, so synthesis itself never
reaches a package index.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from vault.infra.artifacts import API, MissingSource, Tier, source_files

from .config import REPO_ROOT

#: Lambda's runtime for the API tier's Python (``vault.infra.artifacts.API``); a test checks they agree.
RUNTIME = lambda_.Runtime.PYTHON_3_13
#: Never ship interpreter caches of the build machine.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", "*.pyo"]


class PackagingError(RuntimeError):
    """The product code or its dependencies are not where the deployment expects them."""


def copy_sources(source_root: Path, sources: Sequence[str], destination: Path) -> list[str]:
    """Copy ``sources`` (files or package directories) under ``destination``; return what was copied."""
    try:
        files = source_files(source_root, tuple(sources))
    except MissingSource as exc:
        raise PackagingError(str(exc)) from exc
    for relative, file in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    return [relative for relative, _ in files]


@jsii.implements(ILocalBundling)
class ProductCodeBundling:
    """Local bundler: copies a tier's file set into the asset directory."""

    def __init__(self, source_root: Path, tier: Tier) -> None:
        self._source_root = source_root
        self._tier = tier

    def try_bundle(self, output_dir: str, *_args: object, **_kwargs: object) -> bool:
        # A function whose handler module is missing would deploy and then fail every call.
        handler_file = self._tier.entry_point.file
        if not (self._source_root / handler_file).is_file():
            raise PackagingError(
                f"the {self._tier.name} entry point {handler_file} is missing under {self._source_root}"
            )
        copy_sources(self._source_root, self._tier.sources, Path(output_dir))
        return True


def api_code() -> lambda_.Code:
    """The API function's code asset, bundled locally from this repository."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "vault"),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Only used if local bundling declined, which it never does: it copies or raises.
            image=RUNTIME.bundling_image,
            local=ProductCodeBundling(REPO_ROOT, API),
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
