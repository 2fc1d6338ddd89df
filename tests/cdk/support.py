"""Building and synthesizing the deployment for tests, with concrete account, region and AZs.

The app gets the context of ``cdk/cdk.json`` plus test values, the measurements fixture
and small artifact directories made here. API-code bundling is skipped
(``aws:cdk:bundling-stacks``) so these apps do not depend on the API handler's progress;
the bundler itself is tested on its own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CDK_DIR = Path(__file__).resolve().parents[2] / "cdk"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MEASUREMENTS = FIXTURES / "measurements.json"
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))

from vault_cdk.node import prefer_wheel_node  # noqa: E402

prefer_wheel_node()

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from aws_cdk.cx_api import CloudAssembly  # noqa: E402
from vault_cdk.application import VaultStacks, build  # noqa: E402

ACCOUNT = "123456789012"
REGION = "eu-west-1"
AZS = ["eu-west-1a", "eu-west-1b"]
DOMAIN = "vault.internal.example.com"


def next_image_measurements(directory: Path) -> Path:
    """A second measurements file, as ``nitro-cli build-enclave`` prints it for another image."""
    path = directory / "measurements-next.json"
    pcrs = {"HashAlgorithm": "Sha384 { ... }"}
    pcrs.update({name: digit * 96 for name, digit in (("PCR0", "1"), ("PCR1", "2"), ("PCR2", "3"))})
    path.write_text(json.dumps({"Measurements": pcrs}), encoding="utf-8")
    return path


def artifact_dirs(root: Path) -> tuple[Path, Path]:
    """An artifacts directory and a Lambda dependency layer, shaped as the build makes them."""
    artifacts = root / "artifacts"
    (artifacts / "wheels").mkdir(parents=True)
    (artifacts / "enclave-vault.eif").write_bytes(b"EIF test image")
    (artifacts / "wheels" / "README").write_text("parent wheels\n", encoding="utf-8")
    layer = root / "lambda-deps"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "README").write_text("layer\n", encoding="utf-8")
    return artifacts, layer


def app_context(root: Path, *, region: str | None = REGION, **overrides: Any) -> dict[str, Any]:
    artifacts, layer = artifact_dirs(root)
    context: dict[str, Any] = json.loads((CDK_DIR / "cdk.json").read_text(encoding="utf-8"))["context"]
    context.update(
        {
            "vault:account": ACCOUNT,
            "vault:domainName": DOMAIN,
            "vault:hostedZoneId": "Z0123456789EXAMPLE",
            "vault:hostedZoneName": "example.com",
            "vault:measurements": str(MEASUREMENTS),
            "vault:artifactsDir": str(artifacts),
            "vault:lambdaDependencies": str(layer),
            "aws:cdk:bundling-stacks": [],
        }
    )
    if region is not None:
        context["vault:region"] = region
        context[f"availability-zones:account={ACCOUNT}:region={region}"] = AZS
    context.update(overrides)
    return context


@dataclass
class Synthesized:
    stacks: VaultStacks
    assembly: CloudAssembly
    outdir: Path

    def template(self, tier: str) -> Template:
        stack = getattr(self.stacks, tier)
        return Template.from_json(self.assembly.get_stack_by_name(stack.stack_name).template)

    def raw(self, tier: str) -> Mapping[str, Any]:
        stack = getattr(self.stacks, tier)
        return self.assembly.get_stack_by_name(stack.stack_name).template  # type: ignore[no-any-return]

    def messages(self, tier: str, level: str) -> list[str]:
        """Annotations (``error``, ``warning``, ``info``) of one stack, read from the cloud assembly.

        Read as JSON on purpose: ``aws_cdk.assertions.Annotations`` returns structs from
        ``aws_cdk.cloud_assembly_schema``, a module path that two PyPI packages install over
        each other, so which one wins depends on install order.
        """
        stack = getattr(self.stacks, tier)
        manifest = json.loads((self.outdir / "manifest.json").read_text(encoding="utf-8"))
        artifact = manifest["artifacts"][stack.artifact_id]
        metadata = artifact.get("metadata", {})
        extra = artifact.get("additionalMetadataFile")
        if extra:
            metadata = {**metadata, **json.loads((self.outdir / extra).read_text(encoding="utf-8"))}
        return [
            f"{path}: {entry['data']}"
            for path, entries in metadata.items()
            for entry in entries
            if entry["type"] == f"aws:cdk:{level}"
        ]

    def validation_report(self) -> Mapping[str, Any]:
        path = self.outdir / "validation-report.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def synthesize(root: Path, *, nag: bool = True, region: str | None = REGION, **overrides: Any) -> Synthesized:
    outdir = root / "cdk.out"
    app = App(context=app_context(root, region=region, **overrides), outdir=str(outdir))
    stacks = build(app, nag=nag)
    return Synthesized(stacks, app.synth(), outdir)
