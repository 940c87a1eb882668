"""Fixtures of the distributed tier: an emptied PostgreSQL database, a Redis broker (a dedicated db on
the shared server, or a private redis-server for fault tests), and a worker factory whose teardown
terminates, then kills, every worker it started, even when the test failed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from smq.repository.database import create_database_engine
from smq.repository.repository import Repository
from tests.conftest import SMQ_TABLES
from tests.integration.distributed.harness import Db, RedisServer, Worker, require_server, stop_all

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
    client = redis.Redis.from_url(SHARED_BROKER_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        require_server("Redis", f"{SHARED_BROKER_URL}: {type(exc).__name__}: {exc}")
    client.flushdb()
    yield SHARED_BROKER_URL
    client.flushdb()
    client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test only (it may be killed and restarted), AOF with fsync always."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`start_worker(name, env, concurrency=1, ready=True)`; every worker is stopped at teardown."""
    started: list[Worker] = []

    def start(name: str, env: dict[str, str], *, concurrency: int = 1, ready: bool = True) -> Worker:
        worker = Worker(name, env, tmp_path, concurrency=concurrency)
        started.append(worker)
        worker.start()
        if ready:
            worker.wait_ready()
        return worker

    yield start
    stop_all(started)
    for worker in started:  # shown by pytest only when the test failed
        print(f"---- worker {worker.name} (exit {worker.proc.returncode if worker.proc else None})")
        print(worker.tail(60))
