"""`smq executions list|count|show|history|stats`: query recorded executions."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    console,
    continue_queue_option,
    cutoff_before,
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
from smq.engine.status import FINAL_STATUSES, Status
from smq.repository.repository import ExecutionRecord, HistoryRecord
from smq.repository.retention import FINAL, Deleted, Retention


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


# Open waits `executions show` prints as text (a Map of thousands parked on callbacks has one each).
SHOWN_WAITS = 20


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
    from smq.repository.child_links import children_of, parent_of

    # Nested executions (states:startExecution): the execution that started this one, and its own.
    parent = parent_of(repository.engine, record.execution_id)
    if parent is not None:
        body["parent"] = parent.to_dict()
    children = children_of(repository.engine, record.execution_id)
    if children:
        body["children"] = [child.to_dict() for child in children]

    from smq.repository.waits import WaitStore

    # Answers that reached it when no branch waited for them any more: kept, shown, never dropped.
    undelivered = WaitStore(repository.engine).undelivered(record.execution_id)
    if undelivered:
        body["undelivered"] = undelivered
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
    if record.index is not None:
        lines.append(f"index        {record.index}")
    if record.tags:
        lines.append(
            f"tags         {', '.join(f'{key}={value}' for key, value in sorted(record.tags.items()))}"
        )
    if record.source_execution_id:
        extra = "".join(
            f", {label} {value}"
            for label, value in (("state", record.source_state_name), ("transformer", record.transformer))
            if value
        )
        lines.append(f"chained from {record.source_execution_id}{extra}")
    if "parent" in body:
        parent = body["parent"]
        lines.append(
            f"parent       {parent['state_machine_id']}/{parent['name']} ({parent['parent_execution_id']}), "
            f"state {parent['parent_state_name']}, {parent['mode']}"
        )
    for child in body.get("children", ()):
        lines.append(
            f"child        {child['state_machine_id']}/{child['name']} ({child['child_execution_id']}) "
            f"{child['status']}, from {child['parent_state_name']}, {child['mode']}"
        )
    if record.error is not None:
        lines += [f"error        {record.error}", f"cause        {record.cause}"]
    waits = body.get("waiting_for", [])
    for wait in waits[:SHOWN_WAITS]:
        details = " ".join(f"{key}={value}" for key, value in wait.items() if key != "kind")
        lines.append(f"waiting for  {wait['kind']} {details}")
    if len(waits) > SHOWN_WAITS:
        lines.append(f"             ... and {len(waits) - SHOWN_WAITS:,} more (--json lists every one)")
    for answer in body.get("undelivered", ()):
        what = " ".join(
            f"{key}={answer[key]}"
            for key in ("branch", "token", "correlation_key", "correlation_value")
            if key in answer
        )
        lines.append(
            f"undelivered  {answer.get('kind')} answer {what} ({answer.get('resolution')}, {answer.get('resolved_at')})"
        )
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


@executions.command("delete")
@click.argument("execution", required=False)
@filter_opt
@click.option("--force", is_flag=True, help="Delete RUNNING, WAITING and PAUSED executions too.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation with --filter.")
@json_option
def delete_executions(
    execution: str | None, filter_text: str | None, force: bool, yes: bool, as_json: bool
) -> None:
    """Delete one execution (id or STATE_MACHINE_ID/NAME) or every one --filter matches, with their
    history, waits, timers and chain links, in batches of 500.

    Only final executions (SUCCEEDED, FAILED, TIMED_OUT, ABORTED) unless --force. Exits 1 when
    nothing matched."""
    from smq.execution.control import NotAllowed

    if (execution is None) == (filter_text is None):
        raise click.UsageError("name one EXECUTION or give --filter, not both")
    repository = open_repository(load_settings())
    retention = Retention(repository.engine)
    if execution is not None:
        record = repository.resolve_execution(execution)
        if not force and record.status not in FINAL_STATUSES:
            raise NotAllowed(
                f"execution {record.execution_id} is {record.status}: stop it first, or give --force"
            )
        deleted = retention.delete_executions([record.execution_id], force=force)
    else:
        flt = filter_option(filter_text)
        if not yes and not as_json:
            click.confirm(f"delete {repository.count_executions(flt)} execution(s)?", abort=True)
        deleted = retention.delete_matching(repository.filter_clauses(flt), force=force)
    report_deleted(deleted, as_json)


@executions.command("prune")
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Delete executions that ended longer ago than this: 30d, 12h, 90m, 3600 (seconds).",
)
@click.option(
    "--status",
    "status_text",
    metavar="S[|S...]",
    help="Only these final statuses (default: SUCCEEDED|FAILED|TIMED_OUT|ABORTED).",
)
@click.option("--state-machine", "state_machine_id", help="Only this state machine's executions.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Executions per transaction (each batch holds its locks only while it runs).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@json_option
def prune(
    older_than: str,
    status_text: str | None,
    state_machine_id: str | None,
    batch_size: int,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete finished executions older than --older-than, with their history, waits, timers and chain
    links, oldest first, in batches (the scheduler does it on its own with SMQ_RETENTION)."""
    cutoff = cutoff_before(older_than)
    statuses: tuple[str, ...] = FINAL
    if status_text:
        statuses = tuple(part.strip().upper() for part in status_text.split("|") if part.strip())
        wrong = [status for status in statuses if status not in FINAL]
        if wrong:
            raise click.UsageError(f"--status: {', '.join(wrong)}: only final statuses ({'|'.join(FINAL)})")
    repository = open_repository(load_settings())
    retention = Retention(repository.engine, batch_size=batch_size)
    if dry_run:
        count = retention.count_prunable(cutoff, statuses=statuses, state_machine_id=state_machine_id)
        if as_json:
            echo_json({"dry_run": True, "older_than": cutoff.isoformat(), "executions": count})
        else:
            click.echo(
                f"{count} execution(s) ended before {cutoff.isoformat(timespec='seconds')} would be deleted"
            )
        return
    deleted = retention.prune(cutoff, statuses=statuses, state_machine_id=state_machine_id)
    report_deleted(deleted, as_json, older_than=cutoff)


def report_deleted(deleted: Deleted, as_json: bool, *, older_than: datetime | None = None) -> None:
    """What a deletion removed; exit 1 when it matched nothing (prune: 0, nothing old is fine)."""
    if as_json:
        echo_json({**({"older_than": older_than.isoformat()} if older_than else {}), **deleted.to_dict()})
    else:
        click.echo(
            f"{deleted.executions} execution(s) deleted ({deleted.history} history rows, {deleted.waits} waits "
            f"and timers, {deleted.chain_links} chain links, {deleted.child_links} child links, {deleted.ledger} ledger entries) "
            f"in {deleted.batches} batch(es)"
        )
    if older_than is None and not deleted.executions:
        sys.exit(EXIT_NOT_SUCCEEDED)


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
