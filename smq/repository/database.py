"""Engines and migrations for the two supported stores.

SQLite (the embedded default) runs in WAL mode with a busy timeout, and every transaction starts with
`BEGIN IMMEDIATE`: a deferred transaction that later writes can fail at once with "database is locked"
(SQLite cannot wait on a lock upgrade), an immediate one waits its turn. PostgreSQL is for many workers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from smq.engine.errors import SmqError

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 60_000


_DRIVER_UNAVAILABLE: tuple[type[BaseException], ...] = (
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Is `exc` the database being out of reach (stopped, restarting, a dropped connection, SQLite
    busy), which waiting can cure, rather than a statement that will fail the same way again?"""
    if isinstance(exc, (OperationalError, InterfaceError, *_DRIVER_UNAVAILABLE)):
        return True  # the driver's own errors reach us unwrapped from raw pooled connections
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class SchemaOutdated(SmqError):
    """The database schema is behind this smq; `smq db upgrade` brings it up to date."""


def create_database_engine(url: str, **kwargs: Any) -> Engine:
    """An Engine for `url`, configured for concurrent use on SQLite and PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # No pool_pre_ping: it costs a round trip per checkout on the hot path. Dropped connections surface
    # as errors that callers retry (Celery does); pool_recycle retires idle connections early.
    options: dict[str, Any] = {"pool_size": 10, "max_overflow": 20, "pool_recycle": 1800}
    options.update(kwargs)
    # Looked up at each call, not imported by name: OpenTelemetry's SQLAlchemy instrumentation (SMQ_TRACING)
    # wraps sqlalchemy.create_engine, and engines made after it is set up are traced.
    return sqlalchemy.create_engine(parsed, **options)


def _sqlite_engine(url: str, *, immediate: bool = True, **kwargs: Any) -> Engine:
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint the WAL every ~40 MB instead of every 4 MB: each checkpoint costs two fsyncs in
        # whichever commit triggers it, and index pages written many times are copied back only once.
        cursor.execute("PRAGMA wal_autocheckpoint = 10000")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA case_sensitive_like = ON")  # name_prefix filters behave as on PostgreSQL
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def autocommit_engine(engine: Engine) -> Engine:
    """An engine for reads and single-statement writes.

    PostgreSQL: connections stay in autocommit; a single statement is atomic by itself, and skipping
    BEGIN/COMMIT and the reset-on-return ROLLBACK saves two round trips per write. SQLite: plain
    deferred transactions, so readers never queue behind the write lock (WAL lets them read freely).
    """
    if engine.dialect.name == "sqlite":
        return _sqlite_engine(engine.url.render_as_string(hide_password=False), immediate=False)
    if engine.dialect.name != "postgresql":
        return engine
    return sqlalchemy.create_engine(
        engine.url,
        isolation_level="AUTOCOMMIT",
        pool_reset_on_return=None,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return config


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _migrate(engine: Engine, action: Any, revision: str) -> None:
    """Run an Alembic command on one connection, serialised across processes (SQLite's write lock
    from BEGIN IMMEDIATE, a PostgreSQL advisory lock)."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7242031)"))
        config.attributes["connection"] = connection
        action(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`; safe to run from several processes at once."""
    _migrate(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to `revision` ("base" removes every smq table)."""
    _migrate(engine, command.downgrade, revision)


def ensure_schema(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade (embedded default) or refuse to run on an outdated schema (shared databases)."""
    if current_revision(engine) == head_revision(engine):
        return
    if auto_upgrade:
        upgrade(engine)
        return
    raise SchemaOutdated(
        f"the database at {engine.url.render_as_string(hide_password=True)} is at schema revision "
        f"{current_revision(engine)!r}, smq needs {head_revision(engine)!r}: run `smq db upgrade`"
    )
