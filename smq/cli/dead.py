"""`smq dead list|show|retry|purge`: the dead letters, which Flower cannot show or retry."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime

import click
from rich.table import Table

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    UsageError,
    cutoff_before,
    echo_json,
    json_option,
    load_settings,
    open_repository,
    queue_choice,
)
from smq.cli.exits import CommandGroup
from smq.cli.listing import Paging, paging_options, print_listing
from smq.repository.queue_records import DeadLetter, DeadLetters
from smq.repository.repository import NotFound, Repository


def _store() -> tuple[DeadLetters, Repository]:
    """The dead letters, with any a worker spooled in Redis while the database was down moved in first."""
    settings = load_settings()
    repository = open_repository(settings)
    store = DeadLetters(repository.engine)
    if settings.broker_url:
        from smq.distributed.dead_letter_spool import drain_spool

        try:
            drain_spool(store, settings.broker_url)
        except Exception as exc:  # the broker is down: the database's letters are still worth showing
            click.echo(f"smq dead: spooled dead letters not read from the broker: {exc}", err=True)
    return store, repository


def _chosen(
    store: DeadLetters,
    task_ids: tuple[str, ...],
    every: bool,
    queue: str | None,
    before: datetime | None = None,
) -> list[DeadLetter]:
    if every == bool(task_ids):
        raise UsageError("name TASK_ID(s) or give --all, not both")
    if every:
        return store.list(queue=queue, before=before)
    found = []
    for task_id in task_ids:
        found.append(_letter(store, task_id))
    return found


def _letter(store: DeadLetters, task_id: str) -> DeadLetter:
    letter = store.get(task_id)
    if letter is None:
        raise NotFound(f"no dead letter with task id {task_id!r}")
    return letter


@click.group(cls=CommandGroup)
def dead() -> None:
    """Tasks smq gave up on: retries spent, time limit, malformed payload."""


@dead.command("list")
@click.option("--queue", type=queue_choice, help="Only this queue's dead letters.")
@paging_options()
@json_option
def list_dead(queue: str | None, paging: Paging, as_json: bool) -> None:
    """Dead letters, the latest failure first."""
    store, _ = _store()

    def fetch(limit: int, token: str | None) -> tuple[list[DeadLetter], str | None]:
        return store.page(queue=queue, limit=limit, page_token=token, oldest_first=paging.oldest_first)

    def table(letters: Sequence[DeadLetter], header: bool) -> Table:
        shown = Table(show_edge=False, show_header=header)
        for column in (
            "task id",
            "queue",
            "reason",
            "state machine",
            "name",
            "attempts",
            "failed at",
            "error",
        ):
            shown.add_column(column)
        for letter in letters:
            shown.add_row(
                letter.task_id,
                letter.queue,
                letter.reason,
                letter.state_machine_id or "-",
                letter.execution_name or "-",
                str(letter.attempts),
                letter.failed_at.isoformat(timespec="seconds"),
                letter.error.splitlines()[0][:80],
            )
        return shown

    print_listing(
        "dead_letters",
        fetch,
        paging,
        as_json=as_json,
        to_json=lambda letter: letter.to_dict(with_traceback=False),
        table=table,
    )


@dead.command("show")
@click.argument("task_id")
@json_option
def show_dead(task_id: str, as_json: bool) -> None:
    """One dead letter: payload, error, traceback, attempts, times."""
    store, _ = _store()
    letter = _letter(store, task_id)
    if as_json:
        echo_json(letter.to_dict())
        return
    data = letter.to_dict()
    for key in (
        "task_id",
        "queue",
        "reason",
        "state_machine_id",
        "execution_name",
        "attempts",
        "first_attempt_at",
        "failed_at",
        "error",
    ):
        click.echo(f"{key}: {data[key]}")
    click.echo(f"payload: {json.dumps(letter.payload, ensure_ascii=False)}")
    if letter.traceback:
        click.echo("traceback:")
        click.echo(letter.traceback.rstrip())


@dead.command("retry")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --from-queue, if given).")
@click.option("--from-queue", type=queue_choice, help="With --all: only this queue's dead letters.")
@click.option("--queue", type=queue_choice, help="Enqueue to this queue (default: the queue it died on).")
@json_option
def retry_dead(
    task_ids: tuple[str, ...], every: bool, from_queue: str | None, queue: str | None, as_json: bool
) -> None:
    """Enqueue dead letters again, unchanged, and remove them once published.

    The execution (FAILED with smq.DeadLettered) resumes from its last checkpoint (or starts, if it
    never did)."""
    from smq.distributed.dead_letter_actions import retry_dead_letters

    store, repository = _store()
    report = retry_dead_letters(repository, store, _chosen(store, task_ids, every, from_queue), queue=queue)
    retried, failed = report.retried, report.failed
    if as_json:
        echo_json({"retried": retried, "failed": failed})
    else:
        for item in retried:
            click.echo(f"{item['task_id']} -> {item['new_task_id']} on {item['queue']}")
        for item in failed:
            click.echo(f"{item['task_id']}: not retried: {item['error']}", err=True)
        click.echo(f"{len(retried)} retried, {len(failed)} failed")
    sys.exit(EXIT_NOT_SUCCEEDED if failed else 0)


@dead.command("purge")
@click.argument("task_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter (of --queue, if given).")
@click.option("--queue", type=queue_choice, help="With --all: only this queue's dead letters.")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="With --all: only letters that failed longer ago than this (e.g. 14d, 12h).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation with --all.")
@json_option
def purge_dead(
    task_ids: tuple[str, ...],
    every: bool,
    queue: str | None,
    older_than: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead letters for good (SMQ_RETENTION also deletes those older than the retention)."""
    before = None
    if older_than is not None:
        if not every:
            raise UsageError("--older-than goes with --all")
        before = cutoff_before(older_than)
    store, repository = _store()
    letters = _chosen(store, task_ids, every, queue, before)
    if every and not yes and not as_json:
        click.confirm(f"delete {len(letters)} dead letter(s)?", abort=True)
    from smq.distributed.dead_letter_actions import purge_dead_letters

    deleted = purge_dead_letters(repository, store, letters)
    if as_json:
        echo_json({"deleted": deleted})
    else:
        click.echo(f"{deleted} dead letter(s) deleted")
