"""Powertools logger, metrics and tracer shared by the API modules (spec 1.10).

The logger writes JSON with RFC 3339 UTC timestamps. Libraries that print request
bodies at DEBUG level (botocore: ciphertexts and key blobs) are held at WARNING even
when ``LOG_LEVEL=DEBUG``, so that no ciphertext reaches the logs (decision D9).
The tracer disables itself outside Lambda and when ``POWERTOOLS_TRACE_DISABLED`` is set,
so the same handler runs in the emulator with no X-Ray daemon.
"""

from __future__ import annotations

import enum
import logging
import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from vault.common.logs import QUIET_LOGGERS

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "api"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "NitroVault"

logger = Logger(service=SERVICE, utc=True, use_rfc3339=True)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)

for _name in QUIET_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)


def silence_empty_metrics_warning() -> None:
    """Reads and refusals record no metric; Powertools would warn about it at every flush."""
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


silence_empty_metrics_warning()


class Metric(enum.StrEnum):
    VAULT_CREATE = "VaultCreate"
    VAULT_UPDATE = "VaultUpdate"
    VAULT_DELETE = "VaultDelete"
    VAULT_DECRYPT = "VaultDecrypt"
    VAULT_ROTATE = "VaultRotate"


def count(metric: Metric) -> None:
    metrics.add_metric(name=metric.value, unit=MetricUnit.Count, value=1)
