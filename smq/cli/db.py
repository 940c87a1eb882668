"""`smq db upgrade|current`: the schema is owned by Alembic migrations."""

from __future__ import annotations

import click

from smq.cli.common import EXIT_USAGE, describe, echo_json, exit_code_for, fail, json_option, load_settings
from smq.cli.exits import CommandGroup
from smq.repository.database import create_database_engine, current_revision, head_revision, upgrade
from smq.settings import redact


@click.group(cls=CommandGroup)
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.option(
    "--revision", default="head", show_default=True, help="Alembic revision to upgrade to (e.g. 0009)."
)
@json_option
def upgrade_command(revision: str, as_json: bool) -> None:
    """Apply migrations to SMQ_DATABASE_URL (safe to run from several processes at once)."""
    settings = load_settings()
    engine = create_database_engine(settings.database_url)
    try:
        upgrade(engine, revision)
    except Exception as exc:
        fail(f"upgrade of {settings.database_url} failed: {describe(exc)}", exit_code_for(exc) or EXIT_USAGE)
    if as_json:
        echo_json({"database": redact(settings.database_url), "revision": current_revision(engine)})
    else:
        click.echo(f"{redact(settings.database_url)}: at revision {current_revision(engine)}")


@db.command("current")
@json_option
def current(as_json: bool) -> None:
    """Print the database's revision and the newest one this smq knows."""
    engine = create_database_engine(load_settings().database_url)
    at, head = current_revision(engine), head_revision(engine)
    if as_json:
        echo_json({"current": at, "head": head})
    else:
        click.echo(f"current {at} head {head}")
