"""`smq definitions put|list|show`: versioned state machine definitions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.table import Table

from smq.cli.common import (
    echo_json,
    fail,
    json_option,
    load_definition_or_exit,
    load_settings,
    open_repository,
)
from smq.cli.exits import CommandGroup
from smq.cli.graph import graph
from smq.cli.listing import Paging, paging_options, print_listing
from smq.engine.errors import DefinitionError
from smq.repository.repository import InvalidId


@click.group(cls=CommandGroup)
def definitions() -> None:
    """Store, inspect and delete state machine definitions (each change is a new version)."""


definitions.add_command(graph)


@definitions.command("put")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--id", "state_machine_id", required=True, help="State machine id.")
@json_option
def put(file: str, state_machine_id: str, as_json: bool) -> None:
    """Validate FILE and store it under ID; an unchanged definition keeps its version."""
    definition = load_definition_or_exit(file)
    repository = open_repository(load_settings())
    try:
        record = repository.put_definition(state_machine_id, definition)
    except (DefinitionError, InvalidId) as exc:
        fail(f"{file}: {exc}")
    if as_json:
        echo_json({"state_machine_id": record.state_machine_id, "version": record.version})
    else:
        click.echo(f"{record.state_machine_id} version {record.version}")


@definitions.command("list")
@paging_options()
@json_option
def list_definitions(paging: Paging, as_json: bool) -> None:
    """Every state machine with its latest version, the most recently changed first."""
    repository = open_repository(load_settings())

    def fetch(limit: int, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        return repository.page_definitions(limit=limit, page_token=token, oldest_first=paging.oldest_first)

    def table(rows: Sequence[dict[str, Any]], header: bool) -> Table:
        shown = Table(show_edge=False, show_header=header)
        for column in ("state machine", "latest version", "versions", "updated"):
            shown.add_column(column)
        for row in rows:
            shown.add_row(
                row["state_machine_id"], str(row["latest_version"]), str(row["versions"]), row["updated_at"]
            )
        return shown

    print_listing("definitions", fetch, paging, as_json=as_json, to_json=dict, table=table)


@definitions.command("show")
@click.argument("state_machine_id")
@click.option("--version", type=click.IntRange(min=1), help="Version (default: latest).")
@json_option
def show(state_machine_id: str, version: int | None, as_json: bool) -> None:
    """Print a stored definition (latest version unless --version)."""
    record = open_repository(load_settings()).get_definition(state_machine_id, version)
    if as_json:
        echo_json(record.to_dict())
    else:
        click.echo(f"# {record.state_machine_id} version {record.version}")
        click.echo(json.dumps(record.definition, indent=2, ensure_ascii=False))


@definitions.command("delete")
@click.argument("state_machine_id")
@click.option(
    "--force", is_flag=True, help="Delete even while executions of it are RUNNING, WAITING or PAUSED."
)
@click.option(
    "--with-executions",
    is_flag=True,
    help="Delete its executions too, with their history, waits and chain links (in batches).",
)
@json_option
def delete(state_machine_id: str, force: bool, with_executions: bool, as_json: bool) -> None:
    """Delete every version of a state machine (refused while its executions are not all final).

    Its finished executions stay readable unless --with-executions."""
    from smq.repository.retention import Retention

    repository = open_repository(load_settings())
    deleted = Retention(repository.engine).delete_definition(
        state_machine_id, force=force, with_executions=with_executions
    )
    if as_json:
        echo_json(deleted)
        return
    executions = deleted["executions"]["executions"]
    click.echo(
        f"{state_machine_id}: {deleted['versions']} version(s) deleted"
        + (f", {executions} execution(s) with them" if with_executions else "")
    )


@definitions.command("recovery")
@click.argument("state_machine_id")
@click.option(
    "--strategy",
    type=click.Choice(["retry", "skip", "fail", "pause"]),
    help="What recovery does with a crashed execution of this machine.",
)
@click.option("--max-attempts", type=click.IntRange(min=1), help="Recoveries before the execution fails.")
@json_option
def recovery(state_machine_id: str, strategy: str | None, max_attempts: int | None, as_json: bool) -> None:
    """Show or set the crash-recovery policy of a state machine (default: retry, SMQ_RECOVERY_MAX_ATTEMPTS)."""
    from smq.execution.recovery import get_policy, set_policy

    settings = load_settings()
    repository = open_repository(settings)
    repository.get_definition(state_machine_id)  # NotFound: exit 3
    current_strategy, current_attempts = get_policy(
        repository, state_machine_id, settings.recovery_max_attempts
    )
    if strategy is not None or max_attempts is not None:
        current_strategy = strategy or current_strategy
        current_attempts = max_attempts or current_attempts
        set_policy(repository, state_machine_id, current_strategy, current_attempts)
    if as_json:
        echo_json(
            {
                "state_machine_id": state_machine_id,
                "strategy": current_strategy,
                "max_attempts": current_attempts,
            }
        )
    else:
        click.echo(f"{state_machine_id}: strategy {current_strategy}, at most {current_attempts} recoveries")
