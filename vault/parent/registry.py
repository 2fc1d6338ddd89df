"""Which vault enclaves exist, behind one small interface (spec 3.5).

Descriptions are ``nitro-cli describe-enclaves`` objects. ``GET /enclaves`` shows them
as nitro-cli printed them (PascalCase keys, unknown keys kept), and the decrypt route
picks a CID among them. Production asks ``nitro-cli`` (:mod:`vault.parent.nitro_cli`);
the emulator configures a :class:`StaticRegistry`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vault.parent.config import ENCLAVE_PREFIX

log = logging.getLogger(__name__)

MAX_CID = 0xFFFFFFFF


class EnclaveDescription(BaseModel):
    """One ``describe-enclaves`` entry; keys the parent does not use are carried through."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="allow")

    enclave_name: str = Field(default="", alias="EnclaveName")
    enclave_id: str = Field(default="", alias="EnclaveID")
    process_id: int | None = Field(default=None, alias="ProcessID")
    enclave_cid: int = Field(alias="EnclaveCID", ge=0, le=MAX_CID)
    number_of_cpus: int | None = Field(default=None, alias="NumberOfCPUs")
    cpu_ids: list[int] | None = Field(default=None, alias="CPUIDs")
    memory_mib: int | None = Field(default=None, alias="MemoryMiB")
    state: str | None = Field(default=None, alias="State")
    flags: str | None = Field(default=None, alias="Flags")
    measurements: dict[str, Any] | None = Field(default=None, alias="Measurements")
    image_name: str | None = Field(default=None, alias="ImageName")
    image_version: str | None = Field(default=None, alias="ImageVersion")

    @property
    def is_vault_enclave(self) -> bool:
        return self.enclave_name.startswith(ENCLAVE_PREFIX)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def parse_descriptions(items: Iterable[Any]) -> list[EnclaveDescription]:
    """Keep the entries that describe an enclave; log and drop the others."""
    out = []
    for index, item in enumerate(items):
        try:
            out.append(EnclaveDescription.model_validate(item))
        except ValidationError as exc:
            log.warning(
                "ignoring an enclave description",
                extra={"fields": {"index": index, "problems": exc.error_count()}},
            )
    return out


class EnclaveRegistry(Protocol):
    """The cached vault enclaves, and a lifecycle for whatever keeps them current."""

    def enclaves(self) -> Sequence[EnclaveDescription]:
        """The current vault enclaves; never blocks."""
        ...

    async def start(self) -> None:
        """Begin keeping the list current (called once, at application start)."""
        ...

    async def stop(self) -> None:
        """Stop background work (called once, at shutdown)."""
        ...


class StaticRegistry:
    """A fixed list of enclaves, such as the ones an emulator launched itself."""

    def __init__(self, descriptions: Iterable[dict[str, Any] | EnclaveDescription] = ()) -> None:
        parsed = [
            d if isinstance(d, EnclaveDescription) else EnclaveDescription.model_validate(d)
            for d in descriptions
        ]
        self._enclaves: tuple[EnclaveDescription, ...] = tuple(d for d in parsed if d.is_vault_enclave)

    def enclaves(self) -> Sequence[EnclaveDescription]:
        return self._enclaves

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
