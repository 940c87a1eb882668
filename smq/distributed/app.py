"""The Celery application: `celery -A smq worker -Q critical,default,low` finds it as `smq.celery.app`.

Configuration is the module named by SMQ_CELERY_CONFIG (default `celeryconfig`, installed with smq).
Handler modules (SMQ_HANDLERS) are imported when a worker starts: a missing one stops the worker with
a clear message instead of failing every task later. The worker's log handlers, once Celery has set
them up, write SMQ_LOG_FORMAT and name the execution a line is about (`smq.logs`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger

from smq.engine.handlers import default_registry
from smq.integrations import install_integrations
from smq.loading import HandlerImportError, import_handlers
from smq.logs import TEXT, format_handler
from smq.settings import Settings, SettingsError, redact

log = logging.getLogger("smq.worker")

app = Celery("smq")
app.config_from_object(os.environ.get("SMQ_CELERY_CONFIG", "celeryconfig"))


@signals.worker_init.connect
def _prepare_worker(**_: Any) -> None:
    """Import handlers and check the database schema before the worker takes any task."""
    settings = Settings.from_env()
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
