"""The exit codes of `smq`, and the one place that maps an error to its code.

Scripts decide from the code alone what to do next: 3 and 4 will not change by retrying, 5 may (the
database or the broker is down), 1 is a result (the execution failed, or nothing matched). Commands
raise; `CommandGroup` prints the error (passwords masked) and exits with `exit_code_for(error)`.
Nothing here imports the database or queue layers: error classes are looked up only in modules that
are loaded already (an error of a module nobody imported cannot have been raised).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from smq.engine.errors import SmqError

EXIT_OK = 0
EXIT_NOT_SUCCEEDED = 1  # the execution did not succeed, or nothing matched
EXIT_USAGE = 2  # usage or validation: a bad argument, filter, definition, setting or handler module
EXIT_NOT_FOUND = 3  # no such execution, state machine, dead letter or task token
EXIT_WRONG_STATE = 4  # the execution (or state machine) is not in a state that allows this action
EXIT_UNREACHABLE = 5  # the database or the broker cannot be reached: try again later

# (module, class name) -> code, most specific first. Looked up only in modules already imported.
_NOT_FOUND = (
    ("smq.repository.records", "NotFound"),
    ("smq.repository.waits", "UnknownToken"),
)
_WRONG_STATE = (
    ("smq.execution.control", "NotAllowed"),
    ("smq.repository.waits", "TokenNotWaiting"),
    ("smq.repository.records", "CheckpointConflict"),
    ("smq.execution.runner", "SourceNotReady"),
    ("smq.repository.retention", "DefinitionInUse"),
)
_UNREACHABLE = (
    ("smq.cli.exits", "Unreachable"),
    ("smq.engine.errors", "InfrastructureError"),
    ("smq.distributed.client", "EnqueueError"),
    ("sqlalchemy.exc", "OperationalError"),
    ("sqlalchemy.exc", "InterfaceError"),
    ("sqlalchemy.exc", "DisconnectionError"),
    ("sqlalchemy.exc", "TimeoutError"),
    ("psycopg", "OperationalError"),
    ("redis.exceptions", "ConnectionError"),
    ("redis.exceptions", "TimeoutError"),
    ("redis.exceptions", "BusyLoadingError"),
    ("kombu.exceptions", "OperationalError"),
    ("builtins", "ConnectionError"),
    ("builtins", "TimeoutError"),
)
_USAGE = (
    ("smq.engine.errors", "SmqError"),  # every other error smq raises on purpose names what is wrong
    ("sqlalchemy.exc", "ArgumentError"),  # a malformed SMQ_DATABASE_URL
    ("sqlalchemy.exc", "NoSuchModuleError"),  # an unknown dialect in it
)
_TABLE = ((EXIT_NOT_FOUND, _NOT_FOUND), (EXIT_WRONG_STATE, _WRONG_STATE), (EXIT_UNREACHABLE, _UNREACHABLE))


class Unreachable(SmqError):
    """The database or the broker did not answer (the command says which)."""


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    found = []
    for module_name, class_name in names:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def exit_code_for(error: BaseException) -> int | None:
    """The exit code of an error a command let through; None for one nobody meant (a bug: traceback)."""
    for code, names in _TABLE:
        if isinstance(error, _loaded(names)):
            return code
    if isinstance(error, _loaded(_USAGE)):
        return EXIT_USAGE
    return None


def describe(error: BaseException) -> str:
    """What to print: smq's own errors say it all; a driver's error is named, its first line only
    (SQLAlchemy appends the statement and a link)."""
    if isinstance(error, SmqError):
        return str(error)
    original: Any = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class CommandGroup(click.Group):
    """A group whose commands' errors end the process with their documented exit code and one line on
    stderr naming the command (`smq executions show: no execution with id 'x'`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            code = exit_code_for(error)
            if code is None:
                raise
            from smq.settings import redact

            command = " ".join(part for part in (ctx.command_path, ctx.invoked_subcommand) if part)
            click.echo(redact(f"{command}: {describe(error)}"), err=True)
            ctx.exit(code)
