"""Shared fixtures: real databases for the repository tiers.

`repository` runs each test against SQLite (a private file) and PostgreSQL (a private database on
the local server, `smq_test_<host>_<pid>_<random>`, created once per session, emptied between tests,
dropped at the end; a run that was killed leaves one behind, which the next run drops). Without a reachable
PostgreSQL the PostgreSQL half is skipped, except under CI, where it fails.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from smq import Repository
from smq.repository.database import create_database_engine, upgrade

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
    "smq_branches",
    "smq_messages",
    "smq_recovery_policies",
    "smq_operator_actions",
    "smq_child_links",
)


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


def database_prefix_of_this_host() -> str:
    """`smq_test_<host>_`: the databases test sessions on this host create, recognisable by name."""
    host = re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:16] or "host"
    return f"smq_test_{host}_"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_abandoned_test_databases(connection: Connection, prefix: str) -> list[str]:
    """Drop what interrupted sessions on this host left behind: their pid is gone, nobody is connected.

    A run killed before its teardown (SIGKILL, a lost terminal) cannot drop its own database; the next
    run does. Databases of live sessions (pid alive) and of other hosts (another prefix) are left alone.
    """
    rows = connection.execute(
        text(
            "SELECT d.datname FROM pg_database d WHERE d.datname LIKE :pattern "
            "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)"
        ),
        {"pattern": prefix.replace("_", r"\_") + "%"},
    ).scalars()
    dropped = []
    for name in rows:
        pid = name[len(prefix) :].split("_", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            dropped.append(name)
    return dropped


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this test session, migrated to head, dropped at the
    end; leftovers of interrupted sessions are swept first."""
    prefix = database_prefix_of_this_host()
    name = f"{prefix}{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            swept = sweep_abandoned_test_databases(connection, prefix)
            if swept:
                print(f"dropped {len(swept)} test database(s) left by interrupted runs: {swept}")
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
