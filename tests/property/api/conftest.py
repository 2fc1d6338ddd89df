"""The API's property tests use the unit tests' harness fixture and warning settings."""

from __future__ import annotations

from unit.api.conftest import _no_empty_metrics_warning, api

__all__ = ["_no_empty_metrics_warning", "api"]
