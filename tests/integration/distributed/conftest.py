"""Fixtures of the distributed tier: an emptied PostgreSQL database, a Redis broker (db 11 of the
session's scratch redis-server, or a private durable redis-server for fault tests), and a worker factory whose teardown
terminates, then kills, every worker it started, even when the test failed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from smq import Repository
from smq.repository.database import create_database_engine
from tests.conftest import SMQ_TABLES
from tests.integration.conftest import tier_broker_url
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    private_redis_server,
    report_workers,
    scratch_redis_db,
    stop_all,
    worker_factory,
)


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
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Db 11 of the scratch Redis (or SMQ_TEST_REDIS_URL), emptied before and after the test."""
    with scratch_redis_db(tier_broker_url(request, "SMQ_TEST_REDIS_URL", 11)) as url:
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
