"""`smq leader`: chain a target machine over every execution a filter matches."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    UsageError,
    console,
    echo_json,
    filter_opt,
    filter_option,
    handlers_option,
    json_option,
    load_handlers,
    load_settings,
    open_repository,
    print_enqueue_summary,
    progress_bar,
    requeue_unstarted_option,
)
from smq.cli.start import await_batch, report_batch
from smq.engine.handlers import default_registry
from smq.engine.status import Status
from smq.execution.batch import BatchItem, run_batch
from smq.launching import enqueues
from smq.repository.filters import ExecutionFilter
from smq.repository.repository import Repository
from smq.settings import QUEUES, Settings


@click.command()
@filter_opt
@click.option("--target", "target_id", required=True, help="State machine to start for each source.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Chain at most N sources (the first N the filter matches, oldest first); with "
    "not_chained_into=TARGET in --filter, each run takes the next N.",
)
@click.option(
    "--source-state", "source_state_name", help="Chain from this state's last output (default: final output)."
)
@click.option("--transformer", help="Registered input transformer to apply.")
@click.option(
    "--name-prefix",
    default=None,
    help="Chained execution names: PREFIX + source machine id + ':' + source name, e.g. ship-orders:order-7 "
    "(the source's execution id when that is above 200 characters). Default: TARGET + '-'.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="With --local: chained executions run at once in this process (threads). Distributed: unused.",
)
@click.option("--stop-on-error", is_flag=True, help="Start nothing new once one chained execution fails.")
@click.option(
    "--queue",
    type=click.Choice(QUEUES),
    default="default",
    show_default=True,
    help="Queue to enqueue on (distributed mode).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1, max=10_000),
    default=500,
    show_default=True,
    help="Sources per page and per group() publish (distributed mode).",
)
@click.option(
    "--local",
    is_flag=True,
    help="Run in this process even when SMQ_BROKER_URL is set (the default without it).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Distributed mode: block until every chained execution has ended; exit 0 only if all SUCCEEDED.",
)
@requeue_unstarted_option
@handlers_option
@json_option
def leader(
    filter_text: str | None,
    target_id: str,
    limit: int | None,
    source_state_name: str | None,
    transformer: str | None,
    name_prefix: str | None,
    concurrency: int,
    stop_on_error: bool,
    queue: str,
    chunk_size: int,
    local: bool,
    wait: bool,
    requeue_unstarted: bool,
    handler_modules: tuple[str, ...],
    as_json: bool,
) -> None:
    """Stream the executions matched by --filter and chain --target from each, deterministically named.

    With SMQ_BROKER_URL set the chained executions are enqueued for the workers (re-running enqueues
    nothing twice); with --local, or without a broker, they run in this process."""
    settings = load_settings()
    load_handlers(settings, handler_modules)
    flt = filter_option(filter_text, limit=limit)
    repository = open_repository(settings)
    prefix = f"{target_id}-" if name_prefix is None else name_prefix
    distributed = enqueues(settings, local=local)
    machine, _ = repository.state_machine(target_id)
    if not distributed:  # workers check their own handlers
        machine.check_handlers(default_registry)
    total = repository.count_executions(flt)
    if limit is not None:
        total = min(total, limit)
    if distributed:
        if stop_on_error:
            raise UsageError(
                "--stop-on-error needs --local: enqueued executions run independently on the workers"
            )
        distributed_leader(
            settings,
            repository,
            flt,
            target_id,
            source_state_name,
            transformer,
            prefix,
            queue,
            chunk_size,
            total,
            as_json,
            requeue_unstarted=requeue_unstarted,
            wait=wait,
        )
        return
    if requeue_unstarted:
        raise UsageError("--requeue-unstarted applies to distributed mode (SMQ_BROKER_URL, without --local)")
    progress = progress_bar(f"chaining {target_id}", hidden=as_json)
    with progress:
        task = progress.add_task("chain", total=total)

        def completed(item: BatchItem) -> None:
            progress.advance(task)

        result = run_batch(
            repository,
            target_id,
            flt,
            source_state_name=source_state_name,
            transformer=transformer,
            name_prefix=prefix,
            concurrency=concurrency,
            stop_on_error=stop_on_error,
            on_complete=completed,
            handlers=default_registry,
            keep_items=False,
            payload_limit=settings.payload_limit,
            identity=settings.aws_identity,
            lease_seconds=settings.lease_seconds,
            checkpoints=settings.checkpoints,
        )
    summary = {
        "sources": total,
        "processed": result.total,
        "counts": result.counts,
        "already_chained": result.already_existed,
        "stopped_early": result.stopped_early,
    }
    if as_json:
        echo_json(summary)
    else:
        table = Table(title=f"leader → {target_id}", show_edge=False)
        table.add_column("outcome")
        table.add_column("count", justify="right")
        table.add_row("sources matched", str(total))
        table.add_row("already chained (skipped)", str(result.already_existed))
        for status, count in sorted(result.counts.items()):
            table.add_row(status, str(count))
        if result.stopped_early:
            table.add_row("stopped early (--stop-on-error)", "yes")
        console().print(table)
    ok = set(result.counts) <= {Status.SUCCEEDED} and not result.stopped_early
    sys.exit(EXIT_OK if ok else EXIT_NOT_SUCCEEDED)


def distributed_leader(
    settings: Settings,
    repository: Repository,
    flt: ExecutionFilter,
    target_id: str,
    source_state_name: str | None,
    transformer: str | None,
    prefix: str,
    queue: str,
    chunk_size: int,
    total: int,
    as_json: bool,
    *,
    requeue_unstarted: bool = False,
    wait: bool = False,
) -> None:
    """Stream the sources and publish one chained execution each, in group() chunks; with `wait`, then
    wait for them all to end. With SMQ_METRICS on, its progress is served on SMQ_METRICS_PORT while it
    publishes."""
    from smq.distributed.client import EnqueueSummary, QueueClient
    from smq.distributed.leader import fan_out
    from smq.observability.exposition import process_metrics

    names: list[str] | None = [] if wait else None
    progress = progress_bar(f"enqueueing {target_id} on {queue}", hidden=as_json)
    with progress, process_metrics(settings, "leader") as metrics:
        task = progress.add_task("enqueue", total=total)
        counted = None
        if metrics is not None:
            from smq.observability.metrics import LeaderProgress

            counted = LeaderProgress(metrics, target_id, total)

        def on_chunk(done: int, summary: EnqueueSummary) -> None:
            progress.advance(task, done)
            if counted is not None:
                counted(done, summary)

        summary = fan_out(
            QueueClient(repository),
            target_id,
            flt,
            source_state_name=source_state_name,
            transformer=transformer,
            name_prefix=prefix,
            queue=queue,
            chunk_size=chunk_size,
            on_chunk=on_chunk,
            requeue_unstarted=requeue_unstarted,
            names=names,
        )
    if as_json and names is None:
        echo_json({"mode": "distributed", "queue": queue, "sources": total, **summary.to_dict()})
    elif not as_json:
        print_enqueue_summary(
            f"leader → {target_id} (queue {queue})",
            summary,
            "skipped (queued, running or chained)",
            matched=total,
        )
    if summary.failed or names is None:
        sys.exit(EXIT_NOT_SUCCEEDED if summary.failed else EXIT_OK)
    counts = await_batch(repository, target_id, names, None, as_json)
    if as_json:
        echo_json(
            {"mode": "distributed", "queue": queue, "sources": total, **summary.to_dict(), "counts": counts}
        )
        sys.exit(EXIT_OK if counts.get(Status.SUCCEEDED, 0) == len(names) else EXIT_NOT_SUCCEEDED)
    report_batch(target_id, counts, len(names), False)
