"""What every timed round of bench/distributed.py runs on: K Celery workers on the workers' Redis db, a
staging db that holds a round's messages until they are released into the workers' db at once (one
``MOVE``), the bench database, and the service processes whose CPU is metered beside the workers'.
Also the warm-up (untimed) that every pool child goes through before the first pair."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import harness.progress
import redis
from harness.cpu import CpuMeter
from harness.database import postgres_pids
from harness.paths import DEFINITIONS
from harness.queues import QUEUE
from harness.workers import CeleryWorkers
from sqlalchemy import text

PASS3_FILE = DEFINITIONS / "pass3.json"
PASS3_INPUT = {"name": "bench"}
PASS3_OUTPUT = {"name": "bench", "step": 1}  # what AWS Step Functions returns for PASS3_INPUT
PASS3_STATES = 3

NOOP_TASK = "smq_bench.noop"  # registered by bench_handlers.py
INSERT_TASK = "smq_bench.insert_row"  # likewise: one PostgreSQL INSERT, then what noop does
SMQ_TASK = "execute_state_machine"
# The task's body as profiles name it (smq.tasks registers run_state_machine_task under SMQ_TASK).
TASK_FUNCTIONS = ("run_state_machine_task", "execute_state_machine")
MACHINE_PREFIX = "bench-pass3"  # part 2's timed executions: round i runs state machine bench-pass3-i
WARM_MACHINE = "bench-warm"  # part 2's warm-up (same definition, another id)
SOURCE_MACHINE = "bench-source"  # part 3's sources
CHAIN_TARGET = "bench-chain"  # what parts 3 and 4 chain over the sources

WARMUP_PER_WORKER = 20
CHUNK_SIZE = 500  # fan_out's and enqueue_many's default group() size


def make_app(broker_url: str) -> Any:
    """A Celery app with smq's configuration (celeryconfig) on `broker_url`; nothing else differs."""
    from celery import Celery

    app = Celery("smq-bench")
    app.config_from_object(os.environ.get("SMQ_CELERY_CONFIG", "celeryconfig"))
    app.conf.broker_url = broker_url
    return app


class Workers(CeleryWorkers):
    """K `celery -A smq worker` processes, each in its own session so they can be stopped by id."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path, concurrency: int = 1):
        super().__init__(count, env, log_dir, "bench", concurrency=concurrency)

    def meter(self, extra: dict[str, Callable[[], list[int]]]) -> CpuMeter:
        return CpuMeter({"pool children": self.child_pids, "worker mains": self.main_pids, **extra})


def release(staging: redis.Redis, target_db: int, expected: int) -> None:
    """Move the staged queue into the workers' db at once (MOVE wakes their blocked BRPOP)."""
    staged = staging.llen(QUEUE)
    if staged != expected:
        raise RuntimeError(f"{staged} messages staged in queue {QUEUE!r}, expected {expected}")
    if not staging.move(QUEUE, target_db):
        raise RuntimeError(f"MOVE {QUEUE} {target_db} refused: the workers' db already has that key")


def wait_for(progress: Callable[[], int], target: int, workers: Workers, label: str, poll: float) -> None:
    """Poll `progress()` until it reaches `target`; fail if a worker dies or nothing moves for a minute."""
    harness.progress.wait_for(
        progress, target, label, workers.check_alive, poll=poll, report_every=2.0, indent=""
    )


def smq_machine(number: int) -> str:
    """Part 2's round `number` has a state machine of its own, so counting its executions counts
    only that round's."""
    return f"{MACHINE_PREFIX}-{number}"


def service_processes(repo: Any, client: redis.Redis) -> dict[str, Callable[[], list[int]]]:
    """PostgreSQL backends connected to the bench database, and redis-server, for the CPU meter (a
    server on another host, or one whose /proc is not ours, simply counts 0)."""
    redis_pid = int(client.info("server").get("process_id", 0))
    return {
        "postgres backends": postgres_pids(repo),
        "redis-server": lambda: [redis_pid] if redis_pid else [],
        "this script": lambda: [os.getpid()],
    }


def noop_counter(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def warm_up(
    workers: Workers, worker_app: Any, worker_redis: redis.Redis, repo: Any, queue_client: Any
) -> None:
    """Not timed: every pool child opens its Redis client, its database pool, compiles pass3."""
    count = WARMUP_PER_WORKER * workers.count
    for _attempt in range(5):
        key = f"warm:{uuid.uuid4().hex}"
        pids = f"{key}:pids"
        for _ in range(count):
            worker_app.send_task(NOOP_TASK, args=(key, count, pids), queue=QUEUE)
        wait_for(partial(noop_counter, worker_redis, key), count, workers, "warm-up no-op", 0.05)
        if worker_redis.scard(pids) >= workers.count * workers.concurrency:
            break
    else:
        raise RuntimeError("warm-up: not every pool child took a task")
    key = f"warm-insert{uuid.uuid4().hex[:8]}"  # part 2b's task opens its connection once per child
    for index in range(count):
        worker_app.send_task(INSERT_TASK, args=(key, count, f"{key}-{index}", PASS3_INPUT), queue=QUEUE)
    wait_for(partial(noop_counter, worker_redis, key), count, workers, "warm-up insert", 0.05)
    already, prefix = finished(repo, WARM_MACHINE), uuid.uuid4().hex[:8]
    summary = queue_client.enqueue_many(
        (
            {"state_machine_id": WARM_MACHINE, "name": f"warm-{prefix}-{i}", "input": PASS3_INPUT}
            for i in range(count)
        ),
        QUEUE,
    )
    if summary.enqueued != count:
        raise RuntimeError(f"warm-up: enqueued {summary.to_dict()}")
    wait_for(lambda: finished(repo, WARM_MACHINE) - already, count, workers, "warm-up smq", 0.1)


@dataclass(frozen=True)
class Rig:
    """What every timed round of parts 1, 2 and 2b runs on: the workers and their Redis db, the staging
    side that holds a round's messages until it is released, the bench database, and the service
    processes whose CPU is metered beside the workers'."""

    workers: Workers
    repo: Any
    staging_app: Any
    staging_client: Any
    staging: redis.Redis
    worker_redis: redis.Redis
    db: int
    service_pids: dict[str, Callable[[], list[int]]]


def finished(repo: Any, machine: str) -> int:
    """Executions of state machine `machine` that are no longer RUNNING."""
    with repo.reader.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM smq_executions WHERE state_machine_id = :sm AND status <> 'RUNNING'"
                ),
                {"sm": machine},
            ).scalar_one()
        )
