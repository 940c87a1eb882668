"""The Celery application: `celery -A smq worker -Q critical,default,low` finds it as `smq.celery.app`.

Configuration is the module named by SMQ_CELERY_CONFIG (default `celeryconfig`, installed with smq).
Handler modules (SMQ_HANDLERS) are imported when a worker starts: a missing one stops the worker with
a clear message instead of failing every task later.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery, signals

from smq.loading import HandlerImportError, import_handlers
from smq.settings import Settings, redact

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
    log.info("smq worker ready: handlers %s", ", ".join(module.__name__ for module in modules) or "(none)")
