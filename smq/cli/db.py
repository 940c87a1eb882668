"""`smq db upgrade|current`: the schema is owned by Alembic migrations."""

from __future__ import annotations

import click

from smq.cli.common import EXIT_USAGE, describe, exit_code_for, fail, load_settings
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
def upgrade_command(revision: str) -> None:
    """Apply migrations to SMQ_DATABASE_URL (safe to run from several processes at once)."""
    settings = load_settings()
    engine = create_database_engine(settings.database_url)
    try:
        upgrade(engine, revision)
    except Exception as exc:
        fail(f"upgrade of {settings.database_url} failed: {describe(exc)}", exit_code_for(exc) or EXIT_USAGE)
    click.echo(f"{redact(settings.database_url)}: at revision {current_revision(engine)}")


@db.command("current")
def current() -> None:
    """Print the database's revision and the newest one this smq knows."""
    engine = create_database_engine(load_settings().database_url)
    click.echo(f"current {current_revision(engine)} head {head_revision(engine)}")
