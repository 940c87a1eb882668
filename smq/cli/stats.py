"""`smq stats`: queues (pending, active, scheduled, dead) and executions by status, once or watched."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table

from smq.cli.common import console, echo_json, json_option, load_settings, open_repository
from smq.cli.exits import Unreachable
from smq.distributed.stats import collect_stats


def render(stats: dict[str, Any]) -> Group:
    queues = Table(title="queues", show_edge=False)
    for column in ("queue", "pending", "active", "scheduled", "dead"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue, counts in stats["queues"].items():
        queues.add_row(
            queue, *(str(counts.get(key, "-")) for key in ("pending", "active", "scheduled", "dead"))
        )
    executions = Table(title="executions", show_edge=False)
    executions.add_column("status")
    executions.add_column("count", justify="right")
    for status, count in stats["executions"].items():
        executions.add_row(status, str(count))
    parts: list[Any] = [queues, executions]
    if stats["broker"] is None:
        parts.append("no broker configured (SMQ_BROKER_URL): queue figures unavailable")
    elif stats["broker_error"]:
        parts.append(f"[red]broker unreachable: {stats['broker_error']}[/red]")
    return Group(*parts)


@click.command()
@click.option(
    "--watch",
    type=click.FloatRange(min=0.2),
    metavar="SECONDS",
    help="Refresh every SECONDS until Ctrl-C (on a terminal in place; piped, one snapshot after another).",
)
@json_option
def stats(watch: float | None, as_json: bool) -> None:
    """Per queue: pending, active (unacknowledged), scheduled (ETA), dead; executions by status.

    Exits 5 when the broker (or the database) cannot be reached: a health probe may call it."""
    settings = load_settings()
    repository = open_repository(settings)
    if watch is None:
        snapshot = collect_stats(repository, settings.broker_url)
        if as_json:
            echo_json(snapshot)
        else:
            console().print(render(snapshot))
        if snapshot["broker_error"]:
            raise Unreachable(f"broker unreachable: {snapshot['broker_error']}")
        return
    try:
        if as_json or not sys.stdout.isatty():
            # One JSON object per line, or one plain snapshot after another: for scripts and logs that
            # tail it (a live display redrawn in place shows nothing there until it stops).
            while True:
                snapshot = collect_stats(repository, settings.broker_url)
                if as_json:
                    echo_json(snapshot)
                else:
                    click.echo(f"-- {snapshot['time']}")
                    console().print(render(snapshot))
                sys.stdout.flush()
                time.sleep(watch)
        with Live(render(collect_stats(repository, settings.broker_url)), console=console()) as live:
            while True:
                time.sleep(watch)
                live.update(render(collect_stats(repository, settings.broker_url)))
    except KeyboardInterrupt:
        pass
