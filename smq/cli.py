"""The `smq` command line.

Exit codes are part of the interface: 0 when an execution SUCCEEDED (or a definition is valid), 1 for
any other final status, 2 for usage and validation errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from smq import __version__
from smq.engine.compiler import load_definition, validate_definition
from smq.engine.cursor import HistoryEntry
from smq.engine.errors import DefinitionError, UnknownResourceError
from smq.engine.handlers import default_registry
from smq.engine.machine import ExecutionResult, StateMachine
from smq.loading import HandlerImportError, import_handlers
from smq.settings import Settings, SettingsError

EXIT_OK, EXIT_NOT_SUCCEEDED, EXIT_USAGE = 0, 1, 2


class UsageError(click.UsageError):
    exit_code = EXIT_USAGE


def parse_json_argument(value: str | None, option: str) -> Any:
    """`--input '{"a": 1}'` or `--input @file.json`; a clear usage error names the option."""
    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def read_definition_file(file: str) -> dict[str, Any]:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"FILE: cannot read {file}: {exc.strerror}") from None
    return load_definition(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="smq")
def main() -> None:
    """smq: Amazon States Language workflows, run locally or on Celery workers."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as a JSON array.")
def validate(file: str, as_json: bool) -> None:
    """Check a definition (JSON or YAML); print every problem. Exit 2 when invalid."""
    try:
        problems = validate_definition(read_definition_file(file))
    except DefinitionError as exc:
        problems = exc.problems
    if as_json:
        click.echo(json.dumps([{"where": p.where, "message": p.message} for p in problems], indent=2))
    elif problems:
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
    else:
        click.echo(f"{file}: valid")
    sys.exit(EXIT_USAGE if problems else EXIT_OK)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "input_text", metavar="JSON|@FILE", help="Execution input (default {}).")
@click.option(
    "--handlers",
    "handler_modules",
    multiple=True,
    metavar="MODULE",
    help="Module or .py file registering handlers.",
)
@click.option("--name", help="Execution name (default: a UUID).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: status, output, error, cause.")
def run(
    file: str, input_text: str | None, handler_modules: tuple[str, ...], name: str | None, as_json: bool
) -> None:
    """Run one execution of FILE in this process and print its result and history."""
    settings = load_settings()
    execution_input = parse_json_argument(input_text, "--input")
    try:
        import_handlers([*settings.handlers, *handler_modules])
        machine = StateMachine.from_definition(read_definition_file(file), name=Path(file).stem)
    except HandlerImportError as exc:
        raise UsageError(f"--handlers: {exc}") from None
    except DefinitionError as exc:
        click.echo(f"{file}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        result = machine.run(
            execution_input,
            handlers=default_registry,
            name=name,
            payload_limit=settings.payload_limit,
            max_transitions=settings.max_transitions,
            max_workers=settings.max_workers,
        )
    except UnknownResourceError as exc:
        click.echo(f"{file}: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        print_result(result)
    sys.exit(EXIT_OK if result.status == "SUCCEEDED" else EXIT_NOT_SUCCEEDED)


def _preview(value: Any, width: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def history_table(history: list[HistoryEntry]) -> Table:
    table = Table(title="History", title_justify="left", show_edge=False)
    widths = {"#": 3, "state": 24, "type": 8, "status": 9, "attempt": 7, "ms": 6}
    for column, width in widths.items():
        numeric = column in ("#", "attempt", "ms")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True, min_width=width)
    table.add_column("output / error", overflow="ellipsis", no_wrap=True, max_width=60)
    for index, entry in enumerate(history, 1):
        name = f"  {entry.scope}/{entry.state_name}" if entry.scope else entry.state_name
        detail = _preview(entry.output) if entry.error is None else f"{entry.error}: {entry.cause or ''}"
        colour = {"SUCCEEDED": "green", "FAILED": "red", "RETRIED": "yellow", "CAUGHT": "magenta"}.get(
            entry.status, ""
        )
        table.add_row(
            str(index),
            name,
            entry.state_type,
            f"[{colour}]{entry.status}[/]" if colour else entry.status,
            str(entry.attempt),
            f"{(entry.exited_at - entry.entered_at) * 1000:.1f}",
            detail,
        )
    return table


def print_result(result: ExecutionResult) -> None:
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    console.print(history_table(result.history))
    colour = "green" if result.status == "SUCCEEDED" else "red"
    console.print(f"\nStatus: [bold {colour}]{result.status}[/]")
    if result.status == "SUCCEEDED":
        console.print("Output:")
        console.print_json(json.dumps(result.output))
    else:
        console.print(f"Error:  {result.error}")
        console.print(f"Cause:  {result.cause}")


if __name__ == "__main__":  # pragma: no cover
    main()
