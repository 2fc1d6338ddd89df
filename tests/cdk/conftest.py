"""One synthesized production-shaped app for the whole session (cdk-nag included)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import Synthesized, synthesize


@pytest.fixture(scope="session")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("vault"))
