"""Migrations are the schema's source of truth: an empty database upgraded to head equals the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from smq import Repository
from smq.repository.database import (
    SchemaOutdated,
    create_database_engine,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from smq.repository.models import Base


def _empty(url: str) -> None:
    engine = create_database_engine(url)
    if engine.dialect.name == "sqlite":
        engine.dispose()
        Path(engine.url.database or "").unlink(missing_ok=True)
        return
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def test_upgrade_of_an_empty_database_matches_the_models(database_url: str) -> None:
    _empty(database_url)
    engine = create_database_engine(database_url)
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    with engine.connect() as connection:
        dialect = engine.dialect.name

        def built_here(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
            """What the models build on this backend: an index made for one dialect only (ddl_if, e.g.
            the GIN index on tags) is not expected on the others."""
            only = getattr(obj, "_ddl_if", None)
            return only is None or only.dialect in (None, dialect)

        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": built_here}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], differences
    assert {"smq_definitions", "smq_executions", "smq_history", "smq_chain_links"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_reverses_it(database_url: str) -> None:
    engine = create_database_engine(database_url)
    upgrade(engine)
    upgrade(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not {"smq_executions", "smq_history"} & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


def test_embedded_default_upgrades_itself_on_first_use(sqlite_url: str) -> None:
    repository = Repository.open(sqlite_url)
    assert current_revision(repository.engine) == head_revision(repository.engine)
    repository.close()


def test_a_shared_database_behind_the_code_is_refused_with_the_fix(database_url: str) -> None:
    _empty(database_url)
    engine = create_database_engine(database_url)
    with pytest.raises(SchemaOutdated, match="smq db upgrade"):
        ensure_schema(engine, auto_upgrade=False)
    upgrade(engine)
    engine.dispose()


def test_history_rows_survive_dropping_and_restoring_their_foreign_key(database_url: str) -> None:
    """0007 drops smq_history's foreign key (SQLite: by rebuilding the table): rows are kept both ways,
    and without the key a history row no longer needs its execution row."""
    _empty(database_url)
    engine = create_database_engine(database_url)
    history_row = (
        "INSERT INTO smq_history (execution_id, sequence, state_name, state_type, status, scope, attempt, "
        "entered_at, exited_at) VALUES (:execution, 1, 'A', 'Pass', 'SUCCEEDED', '', 1, CURRENT_TIMESTAMP, "
        "CURRENT_TIMESTAMP)"
    )
    upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO smq_executions (id, name, state_machine_id, version, status, history_length, "
                "start_time, updated_at, recovery_attempts) VALUES ('e1', 'n', 'm', 1, 'SUCCEEDED', 1, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
            )
        )
        connection.execute(text(history_row), {"execution": "e1"})
    upgrade(engine, "0007")
    with engine.begin() as connection:
        connection.execute(text(history_row), {"execution": "no-such-execution"})
        rows = connection.execute(
            text("SELECT execution_id FROM smq_history ORDER BY execution_id")
        ).scalars()
        assert list(rows) == ["e1", "no-such-execution"]
        connection.execute(text("DELETE FROM smq_history WHERE execution_id = 'no-such-execution'"))
    downgrade(engine, "0006")
    with engine.begin() as connection:
        assert list(connection.execute(text("SELECT execution_id FROM smq_history")).scalars()) == ["e1"]
    upgrade(engine)
    engine.dispose()


def test_executions_held_for_the_dead_letters_become_failed_and_back(database_url: str) -> None:
    """0008: an execution held RUNNING by the old dead-letter lease ends FAILED with smq.DeadLettered;
    one leased by a live worker is left alone; the downgrade holds it again."""
    _empty(database_url)
    engine = create_database_engine(database_url)
    upgrade(engine, "0007")
    insert = text(
        "INSERT INTO smq_executions (id, name, state_machine_id, version, status, history_length, "
        "start_time, updated_at, recovery_attempts, lease_owner, lease_expires_at) VALUES (:id, :id, 'm', 1, "
        "'RUNNING', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, :owner, '9999-01-01 00:00:00+00')"
    )
    with engine.begin() as connection:
        connection.execute(insert, {"id": "held", "owner": "dead-letter:task-1"})
        connection.execute(insert, {"id": "live", "owner": "host:ns:42"})
    upgrade(engine, "0008")
    read = text("SELECT id, status, error, lease_owner FROM smq_executions ORDER BY id")
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(read)]
    assert rows == [("held", "FAILED", "smq.DeadLettered", None), ("live", "RUNNING", None, "host:ns:42")]
    downgrade(engine, "0007")
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(read)]
    assert rows == [
        ("held", "RUNNING", None, "dead-letter:migrated"),
        ("live", "RUNNING", None, "host:ns:42"),
    ]
    upgrade(engine)
    engine.dispose()
