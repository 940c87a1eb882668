"""The Celery application: `celery -A smq worker -Q critical,default,low` finds it as `smq.celery.app`.

Configuration is the module named by SMQ_CELERY_CONFIG (default `celeryconfig`, installed with smq).
Handler modules (SMQ_HANDLERS) are imported when a worker starts: a missing one stops the worker with
a clear message instead of failing every task later. The worker's log handlers, once Celery has set
them up, write SMQ_LOG_FORMAT and name the execution a line is about (`smq.logs`). With SMQ_METRICS on
(the default) the worker serves the metrics of all its pool processes on SMQ_METRICS_PORT
(`smq.observability.exposition`); with SMQ_TRACING on, every pool process traces its runs.
Every message published carries the time it was sent (`smq_sent_at`): the scheduler's metrics show
the age of each queue's oldest message.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger

from smq.engine.errors import SmqError
from smq.engine.handlers import default_registry
from smq.integrations import install_integrations
from smq.loading import HandlerImportError, import_handlers
from smq.logs import TEXT, format_handler
from smq.settings import Settings, SettingsError, redact

log = logging.getLogger("smq.worker")

SENT_AT_HEADER = "smq_sent_at"
# The worker's metrics: the multiprocess directory (and whether it is a temporary one) and the server.
_metrics: dict[str, Any] = {}

app = Celery("smq")
app.config_from_object(os.environ.get("SMQ_CELERY_CONFIG", "celeryconfig"))


@signals.worker_init.connect
def _prepare_worker(**_: Any) -> None:
    """Import handlers and check the database schema before the worker takes any task."""
    settings = Settings.from_env()
    if settings.metrics:
        # Before a handler module may import prometheus-client, and before the pool forks.
        from smq.observability.exposition import use_multiprocess_dir

        _metrics["dir"], _metrics["temporary"] = use_multiprocess_dir(settings)
    if settings.tracing:
        try:
            import smq.observability.tracing  # noqa: F401 - fails now, not in every task, without the extra
        except SmqError as exc:
            print(f"smq worker: {exc}", file=sys.stderr, flush=True)
            os._exit(2)
    try:
        modules = import_handlers(settings.handlers)
    except HandlerImportError as exc:
        print(f"smq worker: {exc} (SMQ_HANDLERS)", file=sys.stderr, flush=True)
        os._exit(2)  # Celery swallows exceptions here; a worker without its handlers must not start
    try:
        integrations = install_integrations(default_registry, settings)
    except SettingsError as exc:
        print(f"smq worker: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
    from smq.distributed.resources import check_database

    try:
        check_database(settings)
    except Exception as exc:
        print(
            redact(f"smq worker: cannot use the database {settings.database_url}: {exc}"),
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)
    log.info(
        "smq worker ready: handlers %s; %s",
        ", ".join(module.__name__ for module in modules) or "(none)",
        integrations,
    )


@signals.worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """The sum of the pool processes' metrics, served from the main process once the pool is up."""
    if "dir" not in _metrics:
        return
    from smq.observability.exposition import multiprocess_registry, serve

    _metrics["server"] = serve(Settings.from_env(), multiprocess_registry(_metrics["dir"]), "worker")


@signals.worker_process_init.connect
def _trace_pool_process(**_: Any) -> None:
    """OpenTelemetry is set up in each pool process (its exporter's thread does not survive a fork)."""
    settings = Settings.from_env()
    if settings.tracing:
        from smq.observability.tracing import configure_tracing

        configure_tracing("smq-worker")


@signals.worker_process_shutdown.connect
def _flush_pool_process_traces(**_: Any) -> None:
    if Settings.from_env().tracing:
        from smq.observability.tracing import flush_tracing

        flush_tracing()


@signals.worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    server = _metrics.pop("server", None)
    if server is not None:
        server.shutdown()
        server.server_close()
    directory = _metrics.pop("dir", None)
    if directory is not None and _metrics.pop("temporary", False):
        from smq.observability.exposition import remove_dir

        remove_dir(Path(directory))


@signals.before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """When the message was published: how long the oldest message of a queue has waited."""
    if isinstance(headers, dict):
        headers[SENT_AT_HEADER] = time.time()  # a retry is a new message: its own time, not the first's


@signals.after_setup_logger.connect
def _format_worker_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """Celery's handlers (the root logger's and multiprocessing's) write SMQ_LOG_FORMAT, with the
    execution's fields: Celery's own lines (received, succeeded) as well as smq's and the handlers'."""
    for target in (logger, get_multiprocessing_logger()):
        for handler in target.handlers if target is not None else ():
            format_handler(handler, app.conf.get("smq_log_format", TEXT))


@signals.after_setup_task_logger.connect
def _format_task_logs(logger: logging.Logger | None = None, **_: Any) -> None:
    """The same for `celery.task`, which handlers may log to (`get_task_logger`)."""
    for handler in logger.handlers if logger is not None else ():
        format_handler(handler, app.conf.get("smq_log_format", TEXT))
