"""Fixtures of the distributed tier: an emptied PostgreSQL database, a Redis broker (a dedicated db on
the shared server, or a private redis-server for fault tests), and a worker factory whose teardown
terminates, then kills, every worker it started, even when the test failed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from smq.repository.database import create_database_engine
from smq.repository.repository import Repository
from tests.conftest import SMQ_TABLES
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    flushed_redis_db,
    private_redis_server,
    report_workers,
    stop_all,
    worker_factory,
)

SHARED_BROKER_URL = os.environ.get("SMQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


@pytest.fixture
def db(postgres_url: str) -> Iterator[Db]:
    """The session's PostgreSQL database, emptied before the test."""
    engine = create_database_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(SMQ_TABLES)} RESTART IDENTITY CASCADE"))
    yield Db(engine, postgres_url)
    engine.dispose()


@pytest.fixture
def repository(db: Db) -> Iterator[Repository]:
    repo = Repository.open(db.url)
    yield repo
    repo.close()


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A dedicated database on the shared Redis, flushed before and after the test."""
    with flushed_redis_db(SHARED_BROKER_URL) as url:
        yield url


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test only (it may be killed and restarted), AOF with fsync always."""
    with private_redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`start_worker(name, env, concurrency=1, ready=True)`; every worker is stopped at teardown."""
    with worker_factory(tmp_path, _stop_and_report) as start:
        yield start


def _stop_and_report(workers: list[Worker]) -> None:
    stop_all(workers)
    report_workers(workers)
