"""Fixtures of the waiting tier.

- `pg`: the session's PostgreSQL database (tests/conftest.py creates it, migrated). Nothing is
  truncated between tests here: every test uses its own state machine ids and correlation keys.
- `deployment`: two `celery worker`s (prefork, -c 1 each) on a dedicated db of the shared Redis
  (flushed before and after), shared by the tests that need ordinary workers. Stopped at session end.
- `private_broker`: a redis-server of the test only, for tests that need workers configured
  differently (park-after, short leases): the shared workers never see their tasks.
- `spawn`: start more workers (stopped, then killed, at teardown even when the test failed).
- `scheduler`: start `smq scheduler` processes (stopped at teardown).
Workers are SIGKILLed (whole process group) at teardown, even when the test failed.
A missing PostgreSQL or Redis fails the test under CI (skips it elsewhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from smq.repository.database import create_database_engine
from smq.repository.repository import Repository
from tests.integration.distributed.harness import Db, RedisServer, Worker, require_server
from tests.integration.waiting.support import Deployment, Scheduler, waiting_env

WAITING_BROKER_URL = os.environ.get("SMQ_TEST_WAITING_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture(scope="session")
def pg(postgres_url: str) -> Iterator[Db]:
    engine = create_database_engine(postgres_url)
    yield Db(engine, postgres_url)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_repository(pg: Db) -> Iterator[Repository]:
    repository = Repository.open(pg.url)
    yield repository
    repository.close()


@pytest.fixture(scope="session")
def shared_broker() -> Iterator[str]:
    client = redis.Redis.from_url(WAITING_BROKER_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        require_server("Redis", f"{WAITING_BROKER_URL}: {type(exc).__name__}: {exc}")
    client.flushdb()
    yield WAITING_BROKER_URL
    client.flushdb()
    client.close()


def _kill(workers: list[Worker]) -> None:
    """SIGKILL every worker's process group at once. Their brokers are thrown away (private) or
    flushed (shared), and PostgreSQL holds the truth, so a warm shutdown would only cost seconds."""
    for worker in workers:
        worker.kill_group()


def _report(workers: list[Worker]) -> None:
    for worker in workers:  # shown by pytest only for a failed test
        print(f"---- worker {worker.name} (exit {worker.proc.returncode if worker.proc else None})")
        print(worker.tail(40))


@pytest.fixture(scope="session")
def deployment(pg: Db, shared_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    logdir = tmp_path_factory.mktemp("shared-workers")
    env = waiting_env(pg.url, shared_broker)
    workers = [Worker(name, env, logdir, concurrency=1) for name in ("wa", "wb")]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield Deployment(pg, shared_broker, env, workers)
    finally:
        _kill(workers)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`spawn(name, env, concurrency=1, ready=True)`: a worker stopped (then killed) at teardown."""
    started: list[Worker] = []

    def start(name: str, env: dict[str, str], *, concurrency: int = 1, ready: bool = True) -> Worker:
        worker = Worker(name, env, tmp_path, concurrency=concurrency)
        started.append(worker)
        worker.start()
        if ready:
            worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        _kill(started)
        _report(started)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Scheduler]]:
    """`scheduler(env)`: a running `smq scheduler`, stopped at teardown."""
    started: list[Scheduler] = []

    def start(env: dict[str, str], *, wait: bool = True) -> Scheduler:
        process = Scheduler(env, tmp_path, f"scheduler-{len(started)}")
        started.append(process)
        process.start()
        if wait:
            process.wait_polling()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
            print(f"---- scheduler log\n{process.log()[-3000:]}")
