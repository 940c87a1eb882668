"""Commands that restart and recover executions: `smq redrive`, `smq recover` and `smq scheduler` (the
dispatcher of durable timers, crash recovery and broker healing).

Whatever becomes RUNNING again is enqueued for the workers when SMQ_BROKER_URL is set, or run in this
process otherwise (give --handlers then).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    continue_queue_option,
    echo_json,
    handlers_option,
    json_option,
    settings_and_repository,
)
from smq.engine.handlers import default_registry
from smq.engine.status import FINAL_STATUSES, Status
from smq.execution.dispatcher import Chore, Dispatcher
from smq.execution.observer import Observer, combine
from smq.execution.operations import Operations
from smq.execution.recovery import continuations, scan
from smq.launching import launcher_for
from smq.logs import configure_logging
from smq.repository.repository import Repository
from smq.settings import Settings, redact


@click.command()
@click.argument("execution")
@continue_queue_option
@handlers_option
@json_option
def redrive(execution: str, queue: str | None, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """Restart a FAILED, TIMED_OUT or ABORTED execution from the state that failed (EXECUTION: id or
    STATE_MACHINE_ID/NAME). Succeeded states are kept and not run again."""
    settings, repository = settings_and_repository(handler_modules)
    final, continued = Operations(repository, settings).redrive(execution, queue)
    if as_json:
        echo_json(
            {"execution_id": final.execution_id, "status": final.status, "continuations": continued.to_dict()}
        )
    else:
        where = "enqueued" if continued.enqueued else f"ran here: {final.status}"
        click.echo(f"redriven {final.execution_id} ({where})")
    # Run here, the rerun's end is known: a script must see it failed again. Enqueued: it runs later.
    if not continued.enqueued and final.status in FINAL_STATUSES and final.status != Status.SUCCEEDED:
        sys.exit(EXIT_NOT_SUCCEEDED)


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be recovered; change nothing.")
@handlers_option
@json_option
def recover(dry_run: bool, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """One recovery scan: take over RUNNING executions whose lease expired (their process is gone)."""
    settings, repository = settings_and_repository(handler_modules)
    found = scan(
        repository,
        lease_seconds=settings.lease_seconds,
        default_attempts=settings.recovery_max_attempts,
        grace=settings.wake_grace,
        dry_run=dry_run,
    )
    continued = launcher_for(repository, settings, handlers=default_registry).continue_executions(
        continuations(found)
    )
    if as_json:
        echo_json(
            {
                "dry_run": dry_run,
                "recovered": [r.to_dict() for r in found],
                "continuations": continued.to_dict(),
            }
        )
        return
    for r in found:
        click.echo(
            f"{r.action:13} {r.execution_id} {r.state_machine_id}/{r.name} in {r.state} (attempt {r.attempt})"
        )
    click.echo(f"{len(found)} execution(s) {'would be ' if dry_run else ''}recovered")


@click.command()
@click.option("--once", is_flag=True, help="One pass (fire due timers, scan for crashes), then exit.")
@click.option(
    "--health-file",
    type=click.Path(dir_okay=False),
    help="Touch this file after every successful pass (for container health checks).",
)
@handlers_option
@json_option
def scheduler(once: bool, health_file: str | None, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """The dispatcher: fire durable timers when due, recover crashed executions and (SMQ_RETENTION) prune old ones, until SIGTERM."""
    settings, repository = settings_and_repository(handler_modules)
    chores: list[Chore] = []
    if settings.broker_url:  # the scheduler also heals what the broker lost
        from smq.distributed.healing import BrokerWatch  # Celery and Redis load only with a broker

        chores.append(BrokerWatch(repository, settings))
    if settings.retention is not None:  # SMQ_RETENTION: delete executions that ended before it
        from smq.execution.pruning import PruneChore

        chores.append(PruneChore(repository, settings.retention))
    if once:
        launcher = launcher_for(repository, settings, handlers=default_registry)
        tick = Dispatcher(repository, settings, launcher=launcher, chores=chores).tick(recover=True)
        if as_json:
            echo_json(tick.to_dict())
        else:
            click.echo(f"{len(tick.woken)} timer(s) fired, {len(tick.recovered)} execution(s) recovered")
        return
    configure_logging(settings.log_format, logging.INFO)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    target = f"enqueue to {redact(settings.broker_url)}" if settings.broker_url else "in-process"
    retention = "off" if settings.retention is None else f"{settings.retention / 86400:g} days"
    click.echo(
        f"smq scheduler: polling every {settings.scheduler_interval:g}s, recovery scan every "
        f"{settings.lease_seconds / 2:g}s ({target}), retention {retention}",
        err=True,
    )
    with scheduler_observer(settings, repository) as observer:
        # Without a broker, continuations run here: their runs are observed as a worker's are.
        launcher = launcher_for(repository, settings, handlers=default_registry, observer=observer)
        Dispatcher(
            repository, settings, launcher=launcher, chores=chores, health_file=health_file, observer=observer
        ).run(stop)


@contextmanager
def scheduler_observer(settings: Settings, repository: Repository) -> Iterator[Observer]:
    """The scheduler's metrics (timers, takeovers, the runs of in-process continuations, and the
    backlog gauges read at each scrape), served on SMQ_METRICS_PORT while it runs, and its traces;
    NOOP with both off."""
    tracer = None
    if settings.tracing:
        from smq.observability.tracing import configure_tracing, tracing_observer

        configure_tracing("smq-scheduler")
        tracer = tracing_observer(repository)
    if not settings.metrics:
        yield combine(tracer)
        return
    from smq.observability.collectors import BacklogCollector
    from smq.observability.exposition import process_metrics

    with process_metrics(settings, "scheduler", BacklogCollector(repository, settings.broker_url)) as metrics:
        yield combine(metrics, tracer)
