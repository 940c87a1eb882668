"""The suite cleans up after interrupted runs: an abandoned test database is dropped, a live one kept."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, text

from tests.conftest import POSTGRES_ADMIN_URL, database_prefix_of_this_host, sweep_abandoned_test_databases


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Connection]:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def _exists(connection: Connection, name: str) -> bool:
    return bool(
        connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
    )


def test_a_database_of_a_dead_session_is_dropped_and_a_live_one_kept(admin: Connection) -> None:
    prefix = database_prefix_of_this_host()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # exited already
    abandoned = f"{prefix}{dead_pid}_{uuid.uuid4().hex[:6]}"
    live = f"{prefix}1_{uuid.uuid4().hex[:6]}"  # pid 1 is always alive
    other_host = f"smq_test_otherhost_{dead_pid}_{uuid.uuid4().hex[:6]}"
    for name in (abandoned, live, other_host):
        admin.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        dropped = sweep_abandoned_test_databases(admin, prefix)
        assert abandoned in dropped
        assert not _exists(admin, abandoned)
        assert _exists(admin, live) and live not in dropped
        assert _exists(admin, other_host) and other_host not in dropped
    finally:
        for name in (abandoned, live, other_host):
            admin.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
