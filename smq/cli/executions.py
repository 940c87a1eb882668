"""`smq executions list|count|show|history|stats`: query recorded executions."""

from __future__ import annotations

import json

import click
from rich.table import Table

from smq.cli.common import (
    console,
    continue_queue_option,
    echo_json,
    filter_opt,
    filter_option,
    handlers_option,
    json_option,
    load_handlers,
    load_settings,
    open_repository,
)
from smq.cli.exits import CommandGroup
from smq.cli.run import history_table
from smq.engine.fanout import branch_progress
from smq.engine.status import Status


@click.group(cls=CommandGroup)
def executions() -> None:
    """Query, stop, resume, delete and prune executions."""


@executions.command("list")
@filter_opt
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N executions.")
@json_option
def list_executions(filter_text: str | None, limit: int | None, as_json: bool) -> None:
    """Executions matching --filter, oldest first."""
    flt = filter_option(filter_text, limit=limit)
    repository = open_repository(load_settings())
    records = repository.stream_executions(flt)
    if as_json:
        # Streamed as one JSON array, one object per line, so millions of rows never sit in memory.
        click.echo("[", nl=False)
        for index, record in enumerate(records):
            click.echo(
                ("," if index else "") + "\n" + json.dumps(record.to_dict(), ensure_ascii=False), nl=False
            )
        click.echo("\n]")
        return
    table = Table(show_edge=False)
    # Ids are in --json; `executions show|history` also take STATE_MACHINE_ID/NAME, shown here.
    for column in ("name", "state machine", "v", "status", "current state", "started", "ms"):
        table.add_column(
            column, no_wrap=column != "name", justify="right" if column in ("v", "ms") else "left"
        )
    for record in records:
        table.add_row(
            record.name,
            record.state_machine_id,
            str(record.version),
            record.status,
            record.current_state or "",
            record.start_time.strftime("%Y-%m-%d %H:%M:%S"),
            "" if record.duration_ms is None else str(record.duration_ms),
        )
    console().print(table)


@executions.command("count")
@filter_opt
def count(filter_text: str | None) -> None:
    """How many executions match --filter (one integer)."""
    flt = filter_option(filter_text)
    click.echo(open_repository(load_settings()).count_executions(flt))


@executions.command("show")
@click.argument("execution")
@json_option
def show(execution: str, as_json: bool) -> None:
    """One execution, by id or STATE_MACHINE_ID/NAME."""
    repository = open_repository(load_settings())
    record = repository.resolve_execution(execution)
    body = record.to_dict()
    if record.status == Status.WAITING:
        from smq.repository.waits import WaitStore

        # What it waits for: an operator at 3 a.m. needs the key, the token or the due time.
        body["waiting_for"] = WaitStore(repository.engine).waiting_for(record.execution_id)
    progress = branch_progress((record.cursor or {}).get("pending"))
    if progress is not None:  # a Parallel or Map parked with its branches: how far they got
        body["branches"] = {"state": record.current_state, **progress}
    if as_json:
        echo_json(body)
    else:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))


@executions.command("history")
@click.argument("execution")
@json_option
def history(execution: str, as_json: bool) -> None:
    """Per-state history of one execution (id or STATE_MACHINE_ID/NAME)."""
    repository = open_repository(load_settings())
    record = repository.resolve_execution(execution)
    entries = repository.history(record.execution_id)
    if as_json:
        echo_json([entry.to_dict() for entry in entries])
    else:
        console().print(history_table(entries))


@executions.command("stats")
@click.option("--state-machine", "state_machine_id", help="Only this state machine.")
@json_option
def stats(state_machine_id: str | None, as_json: bool) -> None:
    """Count and duration percentiles per state machine and status."""
    rows = open_repository(load_settings()).stats(state_machine_id)
    if as_json:
        echo_json(rows)
        return
    table = Table(show_edge=False)
    for column in ("state machine", "status", "count", "mean ms", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("state machine", "status") else "right")
    for row in rows:
        table.add_row(
            row["state_machine_id"],
            row["status"],
            str(row["count"]),
            *(
                "" if row[key] is None else f"{row[key]:g}"
                for key in ("mean_ms", "p50_ms", "p95_ms", "p99_ms")
            ),
        )
    console().print(table)


@executions.command("stop")
@click.argument("execution")
@click.option("--cause", help="Why (recorded as the execution's cause).")
@json_option
def stop(execution: str, cause: str | None, as_json: bool) -> None:
    """Abort a RUNNING, WAITING or PAUSED execution (id or STATE_MACHINE_ID/NAME)."""
    from smq.execution.control import stop_execution

    record = stop_execution(open_repository(load_settings()), execution, cause=cause)
    if as_json:
        echo_json(record.to_dict())
    else:
        click.echo(f"{record.execution_id} {record.status}")


@executions.command("resume")
@click.argument("execution")
@continue_queue_option
@handlers_option
@json_option
def resume(execution: str, queue: str | None, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """Resume a PAUSED execution (held by the recovery strategy "pause") from its last checkpoint."""
    from smq.execution.operations import Operations

    settings = load_settings()
    if not settings.broker_url:
        load_handlers(settings, handler_modules)
    final, continued = Operations(open_repository(settings), settings).resume(execution, queue)
    if as_json:
        echo_json(
            {"execution_id": final.execution_id, "status": final.status, "continuations": continued.to_dict()}
        )
    else:
        click.echo(f"{final.execution_id} {final.status}")
