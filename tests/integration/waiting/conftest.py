"""Fixtures of the waiting tier.

- `pg`: the session's PostgreSQL database (tests/conftest.py creates it, migrated). Nothing is
  truncated between tests here: every test uses its own state machine ids and correlation keys.
- `deployment`: two `celery worker`s (prefork, -c 1 each) on db 12 of the session's scratch
  redis-server (emptied before and after), shared by the tests that need ordinary workers. Stopped at
  session end.
- `private_broker`: a redis-server of the test only, for tests that need workers configured
  differently (park-after, short leases): the shared workers never see their tasks.
- `spawn`: start more workers (stopped, then killed, at teardown even when the test failed).
- `scheduler`: start `smq scheduler` processes (stopped at teardown).
Workers are SIGKILLed (whole process group) at teardown, even when the test failed.
A missing PostgreSQL or Redis fails the test under CI (skips it elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smq import Repository
from smq.repository.database import create_database_engine
from tests.integration.conftest import tier_broker_url
from tests.integration.distributed.harness import (
    Db,
    RedisServer,
    Worker,
    private_redis_server,
    report_workers,
    scratch_redis_db,
    worker_factory,
)
from tests.integration.waiting.support import Deployment, Scheduler, waiting_env


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
def shared_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_redis_db(tier_broker_url(request, "SMQ_TEST_WAITING_REDIS_URL", 12)) as url:
        yield url


def _kill(workers: list[Worker]) -> None:
    """SIGKILL every worker's process group at once. Their brokers are thrown away (private) or
    flushed (shared), and PostgreSQL holds the truth, so a warm shutdown would only cost seconds."""
    for worker in workers:
        worker.kill_group()


def _kill_and_report(workers: list[Worker]) -> None:
    _kill(workers)
    report_workers(workers, 40)


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
    with private_redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """`spawn(name, env, concurrency=1, ready=True)`: a worker killed at teardown."""
    with worker_factory(tmp_path, _kill_and_report) as start:
        yield start


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
