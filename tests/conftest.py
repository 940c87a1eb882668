"""Shared fixtures: real databases for the repository tiers.

`repository` runs each test against SQLite (a private file) and PostgreSQL (a private database on
the local server, created once per session and emptied between tests). Without a reachable
PostgreSQL the PostgreSQL half is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from smq.repository.database import create_database_engine, upgrade
from smq.repository.repository import Repository

POSTGRES_ADMIN_URL = os.environ.get(
    "SMQ_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SMQ_TABLES = (
    "smq_history",
    "smq_chain_links",
    "smq_executions",
    "smq_definitions",
    "smq_dead_letters",
    "smq_enqueued",
    "smq_waits",
    "smq_messages",
    "smq_recovery_policies",
)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this test session, migrated to head."""
    name = f"smq_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # unreachable server, no permission
        admin.dispose()
        _postgres_unavailable(f"{type(exc).__name__}: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'smq.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL (emptied before each test)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'smq.db'}"
        Repository.open(url).close()  # the embedded default migrates itself on first use
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    engine = create_database_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(SMQ_TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    yield url


@pytest.fixture
def repository(database_url: str) -> Iterator[Repository]:
    repo = Repository.open(database_url, auto_upgrade=True)
    yield repo
    repo.close()
