"""The `smq` command line: one module per command family, assembled here.

Commands are loaded when they are run, not when `smq --help` lists them: a command module pulls in
SQLAlchemy, Alembic or Celery, and the list needs none of them (`COMMANDS` carries each one's line of
help; a test checks it against the command's own docstring).
"""

from __future__ import annotations

import importlib

import click

from smq.cli.exits import CommandGroup
from smq.version import __version__

# name -> (module, attribute, the first line of its help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("smq.cli.run", "run", "Run one execution of FILE in this process, record it, and print its result and history."),
    "validate": ("smq.cli.run", "validate", "Check a definition (JSON or YAML); print every problem."),
    "start": ("smq.cli.start", "start", "Start executions of a stored state machine."),
    "leader": ("smq.cli.leader", "leader", "Stream the executions matched by --filter and chain --target from each, deterministically named."),
    "definitions": ("smq.cli.definitions", "definitions", "Store, inspect and delete state machine definitions (each change is a new version)."),
    "executions": ("smq.cli.executions", "executions", "Query, stop, resume, delete and prune executions."),
    "stats": ("smq.cli.stats", "stats", "Per queue: pending, active (unacknowledged), scheduled (ETA), dead; executions by status."),
    "dead": ("smq.cli.dead", "dead", "Tasks smq gave up on: retries spent, time limit, malformed payload."),
    "message": ("smq.cli.waiting", "message", "Messages for executions parked on a Message state."),
    "task": ("smq.cli.waiting", "task", "Answer callback tasks (`.waitForTaskToken`): success, failure, heartbeat."),
    "redrive": ("smq.cli.recovery", "redrive", "Restart a FAILED, TIMED_OUT or ABORTED execution from the state that failed (EXECUTION: id or STATE_MACHINE_ID/NAME)."),
    "recover": ("smq.cli.recovery", "recover", "One recovery scan: take over RUNNING executions whose lease expired (their process is gone)."),
    "scheduler": ("smq.cli.recovery", "scheduler", "The dispatcher: fire durable timers when due, recover crashed executions and (SMQ_RETENTION) prune old ones, until SIGTERM."),
    "db": ("smq.cli.db", "db", "Database schema migrations."),
    "web": ("smq.cli.web", "web", "The web console: executions, their graphs and history, dead letters, waits, and actions."),
}  # fmt: skip

EPILOG = """\b
Environment (the README's Configuration lists every variable):
  SMQ_DATABASE_URL   SQLAlchemy URL (default sqlite:///smq.db; postgresql+psycopg://... for workers)
  SMQ_BROKER_URL     Redis URL: start, leader, redrive and answers enqueue for the workers
  SMQ_HANDLERS       handler modules or .py files, comma-separated (also --handlers)
  SMQ_RETENTION      the scheduler deletes executions finished (and messages, dead letters) longer ago than this (e.g. 30d)
  SMQ_LOG_FORMAT     text or json
  SMQ_WEB_USERS      who may act in `smq web` (name:HASH,...; none: read-only)
\b
Exit codes: 0 ok; 1 the execution did not succeed, or nothing matched; 2 usage or validation;
3 not found; 4 wrong state for this action; 5 database or broker unreachable (retry later).
"""


class LazyGroup(CommandGroup):
    """Lists COMMANDS without importing them; imports one when it is called (or its --help asked)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attribute, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                rows.append((name, click.Command(name, help=COMMANDS[name][2]).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="smq")
def main() -> None:
    """smq: Amazon States Language workflows, recorded in SQL, run locally or on Celery workers."""
