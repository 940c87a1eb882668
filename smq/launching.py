"""Run here or enqueue? Decided once, from the settings, for everything that makes executions go on.

With SMQ_BROKER_URL set (and not `--local`), continuations are published for the workers; otherwise they
run in this process. The CLI and services choose a launcher at their edge and hand it down (the
dispatcher, operator actions, recovery), as dramatiq hands its broker to actors.
"""

from __future__ import annotations

from collections.abc import Iterable

from smq.engine.handlers import HandlerRegistry
from smq.execution.continuation import Continuation, ContinuationSummary, Launcher, LocalLauncher
from smq.execution.observer import Observer
from smq.repository.repository import Repository
from smq.settings import Settings

__all__ = ["Launcher", "LocalLauncher", "continue_executions", "enqueues", "launcher_for"]


def enqueues(settings: Settings, *, local: bool = False) -> bool:
    """The one rule: new executions and continuations go to the workers when a broker is configured,
    unless the caller asked to run here (`--local`)."""
    return bool(settings.broker_url) and not local


def launcher_for(
    repository: Repository,
    settings: Settings,
    *,
    handlers: HandlerRegistry | None = None,
    local: bool = False,
    observer: Observer | None = None,
) -> Launcher:
    """The launcher the settings call for: the workers' queues with a broker, else this process
    (whose runs `observer` hears of: the scheduler's metrics and traces)."""
    if enqueues(settings, local=local):
        # Imported here, the one place that decides: Celery loads only where a broker is configured,
        # so commands that never enqueue (`smq validate`, `smq run`) start in half the time.
        from smq.distributed.launcher import QueueLauncher

        return QueueLauncher(repository)
    return LocalLauncher(repository, settings, handlers, observer=observer)


def continue_executions(
    repository: Repository,
    items: Iterable[Continuation],
    settings: Settings,
    *,
    handlers: HandlerRegistry | None = None,
) -> ContinuationSummary:
    """One batch of continuations with the launcher the settings call for."""
    return launcher_for(repository, settings, handlers=handlers).continue_executions(items)
