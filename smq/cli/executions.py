"""`smq executions list|count|show|history|stats`: query recorded executions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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
from smq.cli.listing import Paging, paging_options, print_listing
from smq.cli.run import history_table
from smq.engine.fanout import branch_progress
from smq.engine.status import Status
from smq.repository.repository import ExecutionRecord, HistoryRecord


@click.group(cls=CommandGroup)
def executions() -> None:
    """Query, stop, resume, delete and prune executions."""


@executions.command("list")
@filter_opt
@paging_options()
@json_option
def list_executions(filter_text: str | None, paging: Paging, as_json: bool) -> None:
    """Executions matching --filter, newest first, a page at a time (--next-token, --all)."""
    flt = filter_option(filter_text)
    repository = open_repository(load_settings())

    def fetch(limit: int, token: str | None) -> tuple[list[ExecutionRecord], str | None]:
        page = repository.page_executions(
            flt, limit=limit, page_token=token, oldest_first=paging.oldest_first
        )
        return page.executions, page.next_token

    print_listing(
        "executions", fetch, paging, as_json=as_json, to_json=ExecutionRecord.to_dict, table=execution_table
    )


def execution_table(records: Sequence[ExecutionRecord], header: bool = True) -> Table:
    table = Table(show_edge=False, show_header=header)
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
    return table


@executions.command("count")
@filter_opt
@json_option
def count(filter_text: str | None, as_json: bool) -> None:
    """How many executions match --filter (one integer)."""
    flt = filter_option(filter_text)
    total = open_repository(load_settings()).count_executions(flt)
    if as_json:
        echo_json({"count": total})
    else:
        click.echo(total)


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
        click.echo(describe_execution(record, body))


def describe_execution(record: ExecutionRecord, body: dict[str, Any]) -> str:
    """`executions show` for people: one fact a line, JSON only for input and output (cut at 2,000
    characters: --json has them whole)."""
    lines = [
        f"execution    {record.state_machine_id}/{record.name}",
        f"id           {record.execution_id}",
        f"machine      {record.state_machine_id} v{record.version}",
        f"status       {record.status}",
        f"state        {record.current_state or '-'}",
        f"started      {body['start_time']}",
    ]
    if record.stop_time is not None:
        lines.append(f"stopped      {body['stop_time']} ({record.duration_ms} ms)")
    lines.append(f"queue        {record.queue or '- (in-process)'}")
    if record.source_execution_id:
        extra = "".join(
            f", {label} {value}"
            for label, value in (("state", record.source_state_name), ("transformer", record.transformer))
            if value
        )
        lines.append(f"chained from {record.source_execution_id}{extra}")
    if record.error is not None:
        lines += [f"error        {record.error}", f"cause        {record.cause}"]
    for wait in body.get("waiting_for", ()):
        details = " ".join(f"{key}={value}" for key, value in wait.items() if key != "kind")
        lines.append(f"waiting for  {wait['kind']} {details}")
    if "branches" in body:
        counts = ", ".join(
            f"{value} {key.replace('_', ' ')}"
            for key, value in body["branches"].items()
            if key not in ("state", "count")
        )
        lines.append(f"branches     {body['branches']['count']} in {body['branches']['state']}: {counts}")
    for label, value in (("input", record.input), ("output", record.output)):
        if value is not None or label == "input":
            text = json.dumps(value, ensure_ascii=False)
            lines.append(
                f"{label:<12} {text if len(text) <= 2000 else text[:2000] + '... (--json: all of it)'}"
            )
    return "\n".join(lines)


@executions.command("history")
@click.argument("execution")
@paging_options(newest_first=False)
@json_option
def history(execution: str, paging: Paging, as_json: bool) -> None:
    """Per-state history of one execution (id or STATE_MACHINE_ID/NAME), in the order it happened
    (--newest-first reverses), a page at a time."""
    repository = open_repository(load_settings())
    record = repository.resolve_execution(execution)

    def fetch(limit: int, token: str | None) -> tuple[list[HistoryRecord], str | None]:
        return repository.page_history(
            record.execution_id, limit=limit, page_token=token, oldest_first=paging.oldest_first
        )

    print_listing(
        "history",
        fetch,
        paging,
        as_json=as_json,
        to_json=HistoryRecord.to_dict,
        table=lambda entries, header: history_table(list(entries), title=header),
    )


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
