"""Fixtures for the parent's tests: an event loop backend, a socket directory, fake enclaves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from unit.parent.fakes import ENCLAVE_CID, Behaviour, FakeEnclave, echo, short_tempdir


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def uds_dir() -> Iterator[Path]:
    with short_tempdir() as path:
        yield path


@pytest.fixture
def start_enclave(uds_dir: Path) -> Iterator[Callable[..., FakeEnclave]]:
    """Start fake enclaves in ``uds_dir``; all are stopped after the test."""
    started: list[FakeEnclave] = []

    def start(behaviour: Behaviour = echo, cid: int = ENCLAVE_CID) -> FakeEnclave:
        enclave = FakeEnclave(uds_dir, cid, behaviour).start()
        started.append(enclave)
        return enclave

    yield start
    for enclave in started:
        enclave.stop()
