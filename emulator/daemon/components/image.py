"""Assembling the enclave image in the state directory, and measuring it."""

from __future__ import annotations

from dataclasses import dataclass

from emulator.daemon.components.base import Component, Context
from emulator.nitro.image import EnclaveImage, assemble_image
from emulator.nitro.measure import measure_image
from vault.infra.key_policy import EnclaveMeasurements


@dataclass(frozen=True)
class BuiltImage:
    image: EnclaveImage
    measurements: EnclaveMeasurements


def build_image(image: EnclaveImage) -> BuiltImage:
    return BuiltImage(image, measure_image(image.directory))


class ImageComponent(Component):
    """Assemble the enclave image in the state dir and measure it."""

    name = "image"
    is_step = True

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._built: BuiltImage | None = None

    @property
    def built(self) -> BuiltImage:
        return self.require(self._built)

    def start(self) -> None:
        built = build_image(assemble_image(self.layout.images / "enclave-vault"))
        self._built = built
        self.context.facts.update(
            image_dir=str(built.image.directory),
            image_digest=built.image.digest,
            pcr0=built.measurements.pcr0,
            pcr1=built.measurements.pcr1,
            pcr2=built.measurements.pcr2,
        )

    def address(self) -> str:
        return str(self._built.image.directory) if self._built is not None else ""
