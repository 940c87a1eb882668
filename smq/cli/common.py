"""Shared pieces of the `smq` commands: argument parsing, repository and handler setup.

Exit codes are part of the interface; they and the mapping of errors to them live in `smq.cli.exits`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from smq.cli.exits import (  # noqa: F401 - re-exported for the commands
    EXIT_NOT_FOUND,
    EXIT_NOT_SUCCEEDED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EXIT_WRONG_STATE,
    describe,
    exit_code_for,
)
from smq.engine.definition_source import load_definition
from smq.engine.errors import DefinitionError
from smq.engine.handlers import default_registry
from smq.integrations import install_integrations
from smq.loading import HandlerImportError, import_handlers
from smq.logs import configure_logging
from smq.repository.database import SchemaOutdated
from smq.repository.filters import ExecutionFilter, FilterError, parse_filter
from smq.repository.repository import Repository
from smq.settings import QUEUES, Settings, SettingsError, redact


class UsageError(click.UsageError):
    exit_code = EXIT_USAGE


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print `message` (URL passwords masked: errors often quote a database or broker URL) and exit."""
    click.echo(redact(message), err=True)
    sys.exit(code)


def console() -> Console:
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def error_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def cutoff_before(older_than: str, option: str = "--older-than") -> datetime:
    """The moment `older_than` (`30d`, `12h`, seconds) ago; a clear usage error names the option."""
    from smq.settings import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(older_than, option))
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def parse_json_argument(value: str | None, option: str, default: Any = None) -> Any:
    """`'{"a": 1}'` or `@file.json`; a clear usage error names the option."""
    if value is None:
        return default
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


def load_settings(log_level: int = logging.WARNING) -> Settings:
    """The settings, and logging to stderr in their SMQ_LOG_FORMAT from `log_level` on (warnings: a
    command's output is what it prints; the scheduler logs what it does)."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    configure_logging(settings.log_format, log_level)
    return settings


def read_definition_file(file: str) -> dict[str, Any]:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"FILE: cannot read {file}: {exc.strerror}") from None
    return load_definition(text)


def load_definition_or_exit(file: str) -> dict[str, Any]:
    try:
        return read_definition_file(file)
    except DefinitionError as exc:
        fail(f"{file}: {exc}")


def load_handlers(settings: Settings, modules: tuple[str, ...]) -> None:
    """Import the handler modules, then add the built-in integrations (SMQ_AWS_INTEGRATIONS) behind them."""
    try:
        import_handlers([*settings.handlers, *modules])
    except HandlerImportError as exc:
        raise UsageError(f"--handlers: {exc}") from None
    try:
        install_integrations(default_registry, settings)
    except SettingsError as exc:
        fail(str(exc))


def open_repository(settings: Settings) -> Repository:
    try:
        return Repository.open(settings.database_url)
    except SchemaOutdated as exc:
        fail(str(exc))
    except Exception as exc:  # driver errors: unreachable server (exit 5), bad URL (exit 2)
        fail(
            f"cannot open the database {settings.database_url}: {describe(exc)}",
            exit_code_for(exc) or EXIT_USAGE,
        )


def filter_option(text: str | None, **overrides: Any) -> ExecutionFilter:
    try:
        return parse_filter(text, **overrides)
    except FilterError as exc:
        raise UsageError(f"--filter: {exc}") from None


handlers_option = click.option(
    "--handlers",
    "handler_modules",
    multiple=True,
    metavar="MODULE",
    help="Module or .py file that registers handlers (repeatable; also SMQ_HANDLERS).",
)
filter_opt = click.option(
    "--filter",
    "filter_text",
    metavar="KEY=VALUE[,...]",
    help="state_machine_id, status (A|B), name_prefix, name_contains, started_after, started_before, "
    "current_state, source_execution_id, not_chained_into, tag.NAME (a user tag's value).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
queue_choice = click.Choice(QUEUES)
continue_queue_option = click.option(
    "--queue",
    type=queue_choice,
    default=None,
    help="Distributed mode: continue it on this queue from now on (default: the queue it ran from).",
)
requeue_unstarted_option = click.option(
    "--requeue-unstarted",
    is_flag=True,
    help="Distributed mode: publish again the names enqueued before that never started (no execution "
    "yet), e.g. after the broker lost messages. One still queued gets a harmless second message.",
)


def print_enqueue_summary(
    title: str, summary: Any, skipped_label: str, *, matched: int | None = None
) -> None:
    """The table `smq start --inputs` and `smq leader` print after enqueueing, then any publish errors."""
    from rich.table import Table

    table = Table(title=title, show_edge=False)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    if matched is not None:
        table.add_row("sources matched", str(matched))
    table.add_row("enqueued", str(summary.enqueued))
    if summary.requeued:
        table.add_row("  of which unpublished before (claimed, never queued or lost)", str(summary.requeued))
    table.add_row(skipped_label, str(summary.skipped))
    table.add_row("failed to enqueue", str(summary.failed))
    console().print(table)
    for error in summary.errors:
        error_console().print(f"enqueue failed: {error}")


def parse_tags(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """`--tag KEY=VALUE` (repeatable) as the execution's tags; a usage error names the one at fault."""
    from smq.repository.tags import TagError, check_tags

    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--tag: {pair!r} is not KEY=VALUE")
        tags[key.strip()] = value
    try:
        return check_tags(tags, "--tag") or None
    except TagError as exc:
        raise UsageError(str(exc)) from None


tag_option = click.option(
    "--tag",
    "tag_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A user tag kept with the execution (repeatable); find them with --filter tag.KEY=VALUE.",
)


def settings_and_repository(handler_modules: tuple[str, ...]) -> tuple[Settings, Repository]:
    """The settings and repository of a command that may run continuations here: without a broker, the
    handler modules (`--handlers`, SMQ_HANDLERS) are imported first."""
    settings = load_settings()
    if not settings.broker_url:
        load_handlers(settings, handler_modules)
    return settings, open_repository(settings)


def progress_bar(label: str, *, hidden: bool) -> Progress:
    """The bar bulk commands draw on stderr (label, bar, done/total, elapsed); `hidden` with --json."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console(),
        disable=hidden,
    )
