"""bench/waiting.py's run: one Redis server, one fresh database, the workers and the scheduler started
once and kept for every part: warm-up, bare Celery, timers, catch-up, messages, in that order."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import redis
from harness.paths import HANDLERS_FILE
from harness.progress import log
from harness.queues import flushed_redis
from harness.servers import fresh_database, redis_base_url

from scenarios.waiting import guard
from scenarios.waiting.bare import run_bare
from scenarios.waiting.catchup import run_catchup
from scenarios.waiting.messages import run_messages
from scenarios.waiting.report import _ms
from scenarios.waiting.results import Results
from scenarios.waiting.rig import (
    CATCHUP_MACHINE,
    MESSAGE_FILE,
    MESSAGE_MACHINE,
    TIMER_FILE,
    TIMER_MACHINE,
    WARM_MESSAGE_MACHINE,
    WARM_TIMER_MACHINE,
    Rig,
    Scheduler,
    Workers,
)
from scenarios.waiting.timers import run_timers
from scenarios.waiting.warm_up import warm_up


def run(args: argparse.Namespace, results: Results, work_dir: Path, settings_out: dict[str, Any]) -> None:
    with redis_base_url(args.redis_url, work_dir) as base:
        run_on(args, results, work_dir, settings_out, base)


def run_on(
    args: argparse.Namespace, results: Results, work_dir: Path, settings_out: dict[str, Any], base: str
) -> None:
    broker_url, record_url = f"{base}/{args.redis_db}", f"{base}/{args.record_db}"
    # Before anything imports smq's Celery app: this process publishes (bare tasks, message
    # continuations through Operations) to the workers' db and nowhere else.
    os.environ["SMQ_BROKER_URL"] = broker_url
    broker, records = redis.Redis.from_url(broker_url), redis.Redis.from_url(record_url)
    if not args.force_redis:
        guard.watch(broker, (args.redis_db, args.record_db))
    with (
        flushed_redis(broker, records, keep=guard.keep_reason),
        fresh_database(args.pg_url, f"smq_bench_wait_{os.getpid()}") as database_url,
        contextlib.ExitStack() as stack,
    ):
        from smq import Operations, QueueClient, Repository, Settings
        from smq.distributed.app import app

        os.environ["SMQ_DATABASE_URL"] = database_url
        settings = Settings.from_env()
        settings_out.update(
            scheduler_interval=settings.scheduler_interval,
            park_after=settings.park_after,
            wake_grace=settings.wake_grace,
        )
        repo = Repository.open(database_url)
        stack.callback(repo.close)
        for machine, path in (
            (TIMER_MACHINE, TIMER_FILE),
            (CATCHUP_MACHINE, TIMER_FILE),
            (WARM_TIMER_MACHINE, TIMER_FILE),
            (MESSAGE_MACHINE, MESSAGE_FILE),
            (WARM_MESSAGE_MACHINE, MESSAGE_FILE),
        ):
            repo.put_definition(machine, json.loads(path.read_text()))
        client = QueueClient(repo, app=app)
        operations = Operations(repo, settings)
        env = {**os.environ, "SMQ_DATABASE_URL": database_url, "SMQ_BROKER_URL": broker_url,
               "SMQ_HANDLERS": str(HANDLERS_FILE), "SMQ_BENCH_RECORD_URL": record_url}  # fmt: skip
        workers = Workers(args.workers, env, work_dir)
        scheduler_env = {k: v for k, v in env.items() if k not in ("SMQ_HANDLERS", "SMQ_BENCH_RECORD_URL")}
        scheduler = Scheduler(scheduler_env, work_dir)
        stack.callback(workers.stop)  # the scheduler first, then the workers (LIFO)
        stack.callback(scheduler.stop)
        log(f"starting {args.workers} worker(s) and `smq scheduler`; logs in {work_dir}")
        workers.start()
        scheduler.start()
        workers.wait_ready(app)
        log("workers ready; warming up")
        rig = Rig(app, repo, client, operations, broker, records, workers, scheduler)
        results.warm_rate = warm_up(rig, args, settings.park_after)
        log(f"part 1: bare Celery, {args.bare:,} tasks at {args.bare_rate:g}/s")
        results.bare = run_bare(rig, args.bare, args.bare_rate)
        log(f"  p50 {_ms(results.bare.latency.p50)} ms, p99 {_ms(results.bare.latency.p99)} ms")
        log(f"part 2: {args.timers:,} timers due over {args.spread:g}s")
        results.timers = run_timers(args, rig, results.warm_rate, settings.park_after)
        log(
            f"  enqueued − due p99 {_ms(results.timers.enqueued.p99)} ms, next state − due p99 "
            f"{_ms(results.timers.next_state.p99)} ms"
        )
        log(f"part 3: catch-up, {args.catchup:,} timers")
        results.catchup = run_catchup(args, rig, results.warm_rate, settings.park_after)
        log(
            f"  drained {results.catchup.from_spawn.get('last_finished', float('nan')):.1f}s after the restart"
        )
        log(f"part 4: {args.messages:,} messages at {args.message_rate:g}/s")
        results.messages = run_messages(args, rig)
        log(f"  send → next state p99 {_ms(results.messages.next_state.p99)} ms")
