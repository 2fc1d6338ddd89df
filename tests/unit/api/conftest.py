"""Fixtures for the API's unit tests: the real handler on moto with test doubles."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from unit.api.harness import ApiHarness, api_harness
from vault.api.observability import silence_empty_metrics_warning


@pytest.fixture(autouse=True)
def _no_empty_metrics_warning() -> Iterator[None]:
    # pytest restores the warning filters around each test, undoing the handler's own filter.
    with warnings.catch_warnings():
        silence_empty_metrics_warning()
        yield


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiHarness]:
    with api_harness(monkeypatch) as harness:
        yield harness
