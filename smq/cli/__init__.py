"""The `smq` command line: one module per command family, assembled here."""

from __future__ import annotations

import click

from smq import __version__
from smq.cli.db import db
from smq.cli.dead import dead
from smq.cli.definitions import definitions
from smq.cli.executions import executions
from smq.cli.leader import leader
from smq.cli.recovery import recover, redrive, scheduler
from smq.cli.run import run, validate
from smq.cli.start import start
from smq.cli.stats import stats
from smq.cli.waiting import message, task
from smq.cli.web import web


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smq")
def main() -> None:
    """smq: Amazon States Language workflows, recorded in SQL, run locally or on Celery workers."""


for command in (
    run,
    validate,
    start,
    leader,
    definitions,
    executions,
    stats,
    dead,
    message,
    task,
    redrive,
    recover,
    scheduler,
    db,
    web,
):
    main.add_command(command)
