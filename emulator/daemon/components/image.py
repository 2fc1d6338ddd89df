"""Assembling the enclave image of the run's spec in the state directory, and measuring it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from emulator.daemon.components.base import Component, Context
from emulator.daemon.enclave_spec import EnclaveSpec
from emulator.nitro.image import EnclaveImage, assemble_image
from emulator.nitro.measure import measure_image
from vault.infra.key_policy import EnclaveMeasurements

#: Where a Dockerfile image keeps its Dockerfile: the build context's root.
DOCKERFILE_NAME = "Dockerfile"


@dataclass(frozen=True)
class BuiltImage:
    image: EnclaveImage
    measurements: EnclaveMeasurements


def build_image(image: EnclaveImage) -> BuiltImage:
    return BuiltImage(image, measure_image(image.directory))


def image_dir_name(spec: EnclaveSpec) -> str:
    """The image's directory under the state's ``images/`` (the vault's: ``enclave-vault``)."""
    return f"enclave-{spec.name}"


def assemble_spec_image(
    spec: EnclaveSpec, destination: Path, *, overrides: Mapping[str, bytes] | None = None
) -> EnclaveImage:
    """(Re)create ``destination`` as ``spec``'s image: its files, its entry point in the manifest.

    A Dockerfile image holds its Dockerfile too (as ``Dockerfile``, at the root): its steps
    decide what runs, so it is measured with the context and the build uses that copy.
    """
    source = spec.image
    if source.dockerfile is not None:
        overrides = {DOCKERFILE_NAME: source.dockerfile.read_bytes(), **(overrides or {})}
    return assemble_image(
        destination,
        overrides=overrides,
        root=source.root,
        sources=source.sources,
        name=image_dir_name(spec),
        entrypoint=spec.entrypoint,
    )


class ImageComponent(Component):
    """Assemble the enclave image in the state dir and measure it."""

    name = "image"
    is_step = True

    def __init__(self, context: Context, spec: EnclaveSpec) -> None:
        super().__init__(context)
        self.spec = spec
        self._built: BuiltImage | None = None

    @property
    def built(self) -> BuiltImage:
        return self.require(self._built)

    def start(self) -> None:
        built = build_image(assemble_spec_image(self.spec, self.layout.images / image_dir_name(self.spec)))
        self._built = built
        self.context.facts.update(
            enclave_spec=self.spec.name,
            image_dir=str(built.image.directory),
            image_digest=built.image.digest,
            pcr0=built.measurements.pcr0,
            pcr1=built.measurements.pcr1,
            pcr2=built.measurements.pcr2,
        )

    def address(self) -> str:
        return str(self._built.image.directory) if self._built is not None else ""
