"""The observer a process's runs report to, from its Settings: metrics, traces, both or none."""

from __future__ import annotations

from typing import Any

from smq.execution.observer import Observer, combine
from smq.repository.repository import Repository
from smq.settings import Settings


def observers_for(settings: Settings, repository: Repository) -> tuple[Observer, Any]:
    """(the observer to pass to the runner, the Metrics for the other counts or None). Imports
    prometheus-client only with SMQ_METRICS on, OpenTelemetry only with SMQ_TRACING on."""
    metrics = None
    if settings.metrics:
        from smq.observability.metrics import metrics_for

        metrics = metrics_for()
    tracer = None
    if settings.tracing:
        from smq.observability.tracing import tracing_observer

        tracer = tracing_observer(repository)
    return combine(metrics, tracer), metrics
