"""Per-process resources of a worker: the repository, the dead letters (spooled in Redis while the
database is down) and the observer of its runs (metrics, traces: `smq.observability`).

Engines must not cross a fork (prefork pool children would share sockets), so each process opens its
own on first use, keyed by pid.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from smq.distributed.dead_letter_spool import SpooledDeadLetters
from smq.execution.observer import Observer
from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.settings import Settings


@dataclass(frozen=True)
class _Resources:
    settings: Settings
    repository: Repository
    dead_letters: SpooledDeadLetters
    observer: Observer
    metrics: Any  # smq.observability.metrics.Metrics, or None with SMQ_METRICS=off


_lock = threading.Lock()
_opened: dict[int, _Resources] = {}


def _resources() -> _Resources:
    pid = os.getpid()
    found = _opened.get(pid)
    if found is not None:
        return found
    with _lock:
        if pid not in _opened:
            settings = Settings.from_env()
            repository = Repository.open(settings.database_url)
            _opened.clear()  # anything inherited from a parent process belongs to the parent
            from smq.observability.observers import observers_for  # prometheus/otel only if on

            observer, metrics = observers_for(settings, repository)
            letters = SpooledDeadLetters(
                DeadLetters(repository.engine),
                settings.broker_url,
                on_recorded=metrics.dead_lettered if metrics is not None else None,
            )
            _opened[pid] = _Resources(settings, repository, letters, observer, metrics)
        return _opened[pid]


def worker_settings() -> Settings:
    return _resources().settings


def worker_repository() -> Repository:
    return _resources().repository


def worker_dead_letters() -> SpooledDeadLetters:
    """Dead letters that reach the database, or the broker's spool while the database is down."""
    return _resources().dead_letters


def worker_observer() -> Observer:
    """What hears of this process's runs: metrics and traces as configured, or NOOP."""
    return _resources().observer


def worker_metrics() -> Any:
    """This process's Metrics (Celery retries), or None with SMQ_METRICS=off."""
    return _resources().metrics


def check_database(settings: Settings) -> None:
    """Open once in the parent (schema current, server reachable), then drop it before any fork."""
    repository = Repository.open(settings.database_url)
    repository.close()
