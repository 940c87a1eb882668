"""Per-process resources of a worker: the repository and the dead letters (spooled in Redis while the
database is down).

Engines must not cross a fork (prefork pool children would share sockets), so each process opens its
own on first use, keyed by pid.
"""

from __future__ import annotations

import os
import threading

from smq.distributed.dead_letter_spool import SpooledDeadLetters
from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.settings import Settings

_lock = threading.Lock()
_opened: dict[int, tuple[Settings, Repository, SpooledDeadLetters]] = {}


def _resources() -> tuple[Settings, Repository, SpooledDeadLetters]:
    pid = os.getpid()
    found = _opened.get(pid)
    if found is not None:
        return found
    with _lock:
        if pid not in _opened:
            settings = Settings.from_env()
            repository = Repository.open(settings.database_url)
            _opened.clear()  # anything inherited from a parent process belongs to the parent
            letters = SpooledDeadLetters(DeadLetters(repository.engine), settings.broker_url)
            _opened[pid] = (settings, repository, letters)
        return _opened[pid]


def worker_settings() -> Settings:
    return _resources()[0]


def worker_repository() -> Repository:
    return _resources()[1]


def worker_dead_letters() -> SpooledDeadLetters:
    """Dead letters that reach the database, or the broker's spool while the database is down."""
    return _resources()[2]


def check_database(settings: Settings) -> None:
    """Open once in the parent (schema current, server reachable), then drop it before any fork."""
    repository = Repository.open(settings.database_url)
    repository.close()
