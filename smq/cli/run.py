"""`smq run` and `smq validate`: one definition file, run in this process or checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    echo_json,
    fail,
    handlers_option,
    json_option,
    load_definition_or_exit,
    load_handlers,
    load_settings,
    open_repository,
    parse_json_argument,
    read_definition_file,
)
from smq.engine.compiler import validate_definition
from smq.engine.errors import DefinitionError, UnknownResourceError
from smq.engine.handlers import default_registry
from smq.engine.machine import StateMachine
from smq.engine.status import EntryStatus, Status
from smq.execution.runner import PayloadTooLarge, StartRequest, start_execution
from smq.integrations import install_integrations, resource_notes
from smq.repository.repository import ExecutionRecord, HistoryRecord, InvalidId
from smq.settings import SettingsError


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def validate(file: str, as_json: bool) -> None:
    """Check a definition (JSON or YAML); print every problem. Exit 2 when invalid.

    AWS service integrations that smq's built-ins will not serve here (the smq[aws] extra missing,
    SMQ_AWS_INTEGRATIONS=off, no such integration) are noted on stderr: a handler may serve them."""
    definition: dict[str, Any] | None = None
    try:
        definition = read_definition_file(file)
        problems = validate_definition(definition)
    except DefinitionError as exc:
        problems = exc.problems
    if as_json:
        echo_json([{"where": p.where, "message": p.message} for p in problems])
    elif problems:
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
    else:
        click.echo(f"{file}: valid")
    if not problems and definition is not None:
        sys.stdout.flush()
        for note in _integration_notes(definition):
            click.echo(f"  note: {note}", err=True)
    sys.exit(EXIT_USAGE if problems else EXIT_OK)


def _integration_notes(definition: dict[str, Any]) -> list[str]:
    settings = load_settings()
    try:
        install_integrations(default_registry, settings)
    except SettingsError as exc:
        fail(str(exc))
    return resource_notes(StateMachine.from_definition(definition).machine, default_registry)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Execution input (default {}).")
@handlers_option
@click.option("--id", "state_machine_id", help="State machine id to store it under (default: the file name).")
@click.option("--name", help="Execution name (default: a UUID). Re-running a name returns that execution.")
@json_option
def run(
    file: str,
    input_text: str | None,
    handler_modules: tuple[str, ...],
    state_machine_id: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Run one execution of FILE in this process, record it, and print its result and history."""
    settings = load_settings()
    execution_input = parse_json_argument(input_text, "--input", default={})
    load_handlers(settings, handler_modules)
    definition = load_definition_or_exit(file)
    machine_id = state_machine_id or Path(file).stem
    repository = open_repository(settings)
    try:
        stored = repository.put_definition(machine_id, definition)
        record = start_execution(
            repository,
            StartRequest(machine_id, execution_input, name=name, version=stored.version),
            handlers=default_registry,
            payload_limit=settings.payload_limit,
            identity=settings.aws_identity,
            max_transitions=settings.max_transitions,
            max_workers=settings.max_workers,
            lease_seconds=settings.lease_seconds,
            checkpoints=settings.checkpoints,
            state_machine_arns=settings.state_machine_arns,
        )
    except DefinitionError as exc:
        fail(f"{file}: {exc}")
    except (UnknownResourceError, PayloadTooLarge, InvalidId) as exc:
        fail(f"{file}: {exc}")
    if as_json:
        echo_json(result_json(record))
    else:
        print_result(record, repository.history(record.execution_id))
    sys.exit(EXIT_OK if record.status == Status.SUCCEEDED else EXIT_NOT_SUCCEEDED)


def result_json(record: ExecutionRecord) -> dict[str, Any]:
    return {
        "status": record.status,
        "output": record.output,
        "error": record.error,
        "cause": record.cause,
        "execution_id": record.execution_id,
        "name": record.name,
    }


def _preview(value: Any, width: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


STATUS_COLOURS: dict[str, str] = {
    EntryStatus.SUCCEEDED: "green",
    EntryStatus.FAILED: "red",
    EntryStatus.RETRIED: "yellow",
    EntryStatus.CAUGHT: "magenta",
    EntryStatus.TIMED_OUT: "red",
}


def history_table(entries: list[HistoryRecord], *, title: bool = True) -> Table:
    """The history as a table; `title` False: a later page of it (no title, no header)."""
    table = Table(
        title="History" if title else None, title_justify="left", show_edge=False, show_header=title
    )
    widths = {"#": 3, "state": 24, "type": 8, "status": 9, "attempt": 7, "ms": 6}
    for column, width in widths.items():
        numeric = column in ("#", "attempt", "ms")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True, min_width=width)
    table.add_column("output / error", overflow="ellipsis", no_wrap=True, max_width=60)
    for entry in entries:
        name = f"  {entry.scope}/{entry.state_name}" if entry.scope else entry.state_name
        detail = _preview(entry.output) if entry.error is None else f"{entry.error}: {entry.cause or ''}"
        colour = STATUS_COLOURS.get(entry.status, "")
        table.add_row(
            str(entry.sequence),
            name,
            entry.state_type,
            f"[{colour}]{entry.status}[/]" if colour else entry.status,
            str(entry.attempt),
            f"{(entry.exited_at - entry.entered_at).total_seconds() * 1000:.1f}",
            detail,
        )
    return table


def print_result(record: ExecutionRecord, entries: list[HistoryRecord]) -> None:
    out = console()
    out.print(history_table(entries))
    colour = "green" if record.status == Status.SUCCEEDED else "red"
    out.print(
        f"\nExecution: {record.execution_id} (name {record.name}, {record.state_machine_id} v{record.version})"
    )
    out.print(f"Status: [bold {colour}]{record.status}[/]")
    if record.status == Status.SUCCEEDED:
        out.print("Output:")
        out.print_json(json.dumps(record.output))
    elif record.status in (Status.WAITING, Status.RUNNING, Status.PAUSED):
        # Not finished, so no error: say where it stands and how to see what it waits for.
        out.print(
            f"In state {record.current_state}: `smq executions show {record.execution_id}` says what it waits for"
        )
    else:
        out.print(f"Error:  {record.error}")
        out.print(f"Cause:  {record.cause}")
