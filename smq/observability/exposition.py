"""Where smq's metrics are scraped: one HTTP endpoint (`/metrics`) per worker, scheduler and leader.

A Celery worker runs its executions in several pool processes (prefork). Their metrics are summed
with prometheus-client's multiprocess mode: every process of the worker writes its counters to files
in one directory (SMQ_METRICS_DIR, else a temporary directory of the worker's own), and the worker's
main process serves the sum. That mode is chosen when prometheus-client is first imported, so
`use_multiprocess_dir` runs in the main process before anything imports it and before the pool forks.
The scheduler and the leader are single processes and serve their own registry.

A port that is taken (two workers on one host with the same SMQ_METRICS_PORT) costs a warning, never
the worker: monitoring must not stop work.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smq.settings import Settings

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("smq.metrics")


def use_multiprocess_dir(settings: Settings) -> tuple[Path, bool]:
    """Point prometheus-client's multiprocess mode at SMQ_METRICS_DIR (emptied: files of an earlier
    run would be summed in), or at a new temporary directory. Returns it, and whether it is temporary
    (the worker removes it when it stops)."""
    temporary = settings.metrics_dir is None
    directory = Path(settings.metrics_dir or tempfile.mkdtemp(prefix="smq-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink()
    os.environ[MULTIPROCESS_ENV] = str(directory)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Imported already (by a handler module, say): its metrics-to-be must use the files too.
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return directory, temporary


def remove_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def multiprocess_registry(directory: Path) -> Any:
    """A registry whose every scrape sums the files of all the worker's processes, live or gone (a
    counter of a pool process that was replaced keeps counting in the total)."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry


def serve(settings: Settings, registry: Any, what: str) -> Any:
    """Serve `registry` on SMQ_METRICS_ADDRESS:SMQ_METRICS_PORT in a daemon thread; returns the server
    (`shutdown()` stops it), or None when the port cannot be had (logged)."""
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(
            settings.metrics_port, settings.metrics_address, registry=registry
        )
    except OSError as exc:
        log.warning(
            "%s: metrics not served on %s:%d (%s); give each process on a host its own SMQ_METRICS_PORT",
            what,
            settings.metrics_address,
            settings.metrics_port,
            exc,
        )
        return None
    log.info("%s: metrics on http://%s:%d/metrics", what, settings.metrics_address, settings.metrics_port)
    return server


@contextmanager
def process_metrics(settings: Settings, what: str, *collectors: Any) -> Iterator[Any]:
    """For a single-process command (`smq scheduler`, `smq leader`): with SMQ_METRICS on, its Metrics
    (yielded) and `collectors` served on SMQ_METRICS_PORT until the `with` ends; None when off."""
    if not settings.metrics:
        yield None
        return
    from prometheus_client import REGISTRY, disable_created_metrics

    from smq.observability.metrics import metrics_for

    disable_created_metrics()  # a `_created` sample per series doubles a scrape for nothing smq needs

    metrics = metrics_for(REGISTRY)
    for collector in collectors:
        REGISTRY.register(collector)
    server = serve(settings, REGISTRY, what)
    try:
        yield metrics
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        for collector in collectors:
            REGISTRY.unregister(collector)
