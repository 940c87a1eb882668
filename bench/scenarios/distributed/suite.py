"""bench/distributed.py's run: one Redis server, one fresh database, the workers started once; the
throughput pairs, then (workers stopped) leader publishing and leader memory."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import redis
from harness.paths import HANDLERS_FILE
from harness.progress import log
from harness.queues import delete_queues, flushed_redis
from harness.servers import fresh_database, redis_base_url
from sqlalchemy import text

from scenarios.distributed.fan_out import run_publishing
from scenarios.distributed.memory import run_memory
from scenarios.distributed.results import Results
from scenarios.distributed.rig import (
    CHAIN_TARGET,
    PASS3_FILE,
    SOURCE_MACHINE,
    WARM_MACHINE,
    Rig,
    Workers,
    make_app,
    service_processes,
    smq_machine,
    warm_up,
)
from scenarios.distributed.throughput import run_pair


def run(args: argparse.Namespace, results: Results, work_dir: Path) -> None:
    with redis_base_url(args.redis_url, work_dir) as base:
        run_on(args, results, work_dir, base)


def run_on(args: argparse.Namespace, results: Results, work_dir: Path, base: str) -> None:
    worker_url, staging_url = f"{base}/{args.redis_db}", f"{base}/{args.staging_db}"
    # Anything in this process that falls back to smq's default app must not reach another Redis db.
    os.environ["SMQ_BROKER_URL"] = worker_url
    worker_redis, staging = redis.Redis.from_url(worker_url), redis.Redis.from_url(staging_url)
    with (
        flushed_redis(worker_redis, staging),
        fresh_database(args.pg_url, f"smq_bench_dist_{os.getpid()}") as database_url,
    ):
        from smq import QueueClient, Repository

        repo = Repository.open(database_url)
        try:
            definition = json.loads(PASS3_FILE.read_text())
            round_machines = [smq_machine(number) for number in range(1, args.pairs + 1)]
            for machine in (*round_machines, WARM_MACHINE, SOURCE_MACHINE, CHAIN_TARGET):
                repo.put_definition(machine, definition)
            with repo.engine.begin() as connection:  # part 2b's rows
                connection.execute(
                    text("CREATE TABLE smq_bench_rows (id text PRIMARY KEY, payload jsonb NOT NULL)")
                )
            worker_app, staging_app = make_app(worker_url), make_app(staging_url)
            staging_client = QueueClient(repo, app=staging_app)
            env = {**os.environ, "SMQ_BROKER_URL": worker_url, "SMQ_DATABASE_URL": database_url,
                   "SMQ_HANDLERS": str(HANDLERS_FILE)}  # fmt: skip
            workers = Workers(args.workers, env, work_dir, args.concurrency)
            rig = Rig(workers, repo, staging_app, staging_client, staging, worker_redis, args.redis_db,
                      service_processes(repo, worker_redis))  # fmt: skip
            log(f"starting {args.workers} worker(s); logs in {work_dir}")
            workers.start()
            try:
                workers.wait_ready(worker_app)
                log("workers ready; warming up")
                warm_up(workers, worker_app, worker_redis, repo, QueueClient(repo, app=worker_app))
                delete_queues(staging)
                for number in range(1, args.pairs + 1):
                    run_pair(number, args, results, rig)
            finally:
                log("stopping the workers")
                workers.stop()
            delete_queues(staging)  # not FLUSHDB: kombu's binding keys must stay (the producer caches them)
            run_publishing(repo, staging_client, staging_app, staging, args.sources, args.rounds, results)
            if not args.skip_memory:
                leader_env = {**os.environ, "SMQ_BROKER_URL": staging_url, "SMQ_DATABASE_URL": database_url}
                leader_env.pop("SMQ_HANDLERS", None)
                run_memory(repo, definition, staging, args.memory_sizes, leader_env, work_dir, results)
        finally:
            repo.close()
