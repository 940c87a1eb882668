"""Waiting: durable-timer dispatch lag and message-to-resume latency, beside bare Celery enqueue-to-start.

Everything runs in one invocation, on one Redis server, one fresh PostgreSQL database
(``smq_bench_wait_<pid>``, created next to ``--pg-url``'s, migrated with
``smq.repository.database.upgrade``, dropped at the end) and the same processes throughout:

- ``--workers`` K (default 2) Celery workers, each exactly
  ``celery -A smq worker -Q critical,default,low -c 1 --pool prefork`` (plus ``-n`` and ``-l``), with
  cwd = the repository, ``SMQ_BROKER_URL`` = Redis db ``--redis-db`` (default 9),
  ``SMQ_DATABASE_URL`` = the fresh database, ``SMQ_HANDLERS`` = ``bench/bench_handlers.py`` (which
  registers the bare task ``smq_bench.latency``) and ``SMQ_BENCH_RECORD_URL`` = Redis db
  ``--record-db`` (default 10), where that task writes its samples;
- one ``smq scheduler`` (the real dispatcher, the CLI) with the same broker and database. It runs in
  a small ``python -c`` wrapper that connects Celery's ``after_task_publish`` signal and appends
  "<wall time> <state machine> <name>" to a file for every continuation it publishes, then calls
  ``smq.cli.main`` with ``scheduler``: nothing else differs. ``SMQ_SCHEDULER_INTERVAL``,
  ``SMQ_PARK_AFTER`` etc. are taken from the environment (defaults 0.2 s and 5 s).

Both Redis dbs are flushed at the start and at the end. The integration tests use dbs 11 and 12 and
bench/distributed.py 13 and 14, so these defaults stay clear of them; as a guard, the script refuses to start if a client that is not its own
(judged through /proc: the process holding the socket) is on either db at any of 5 checks a second apart,
aborts as soon as one appears while it runs, and then leaves the dbs unflushed (``--force-redis`` skips
these checks).
Every subprocess runs in its own session and is stopped on exit, on error and on SIGTERM/SIGINT.

Parts (all latencies are wall clock on this host; p50/p99 are nearest-rank percentiles):

0. **Warm-up** (not timed): bare tasks, timers that park and fire, messages that resume. The timer
   warm-up also measures how fast the workers park executions, which sets part 2's lead time.
1. **Bare Celery enqueue-to-start**: ``--bare`` N (default 1,000) ``smq_bench.latency`` tasks sent at
   ``--bare-rate`` per second (default 200: paced, so it measures latency, not a backlog), each
   carrying its send time; the task appends (sent, started) to a Redis list first thing.
2. **Timer dispatch lag**: ``--timers`` N (default 10,000) executions of
   ``definitions/wait_until.json`` (``Wait`` on ``TimestampPath``, then a Pass), created through the
   real path: enqueued with ``QueueClient.enqueue_many``, run by the workers, which park each one
   (status WAITING, a timer row in ``smq_waits``). Their due times are spread evenly over
   ``--spread`` seconds (default 60: all due within the same minute) starting after every one has
   parked. Per execution, against its due time: *fired* (``smq_waits.resolved_at``: the dispatcher
   resolved the timer), *enqueued* (the publish seen by the hook: what the dispatcher controls),
   *started* (the Wait state's ``exited_at``: a worker has taken the continuation and completed the
   Wait) and *next state* (the Pass state's ``entered_at``: what the user sees).
3. **Catch-up after downtime**: the scheduler is stopped, ``--catchup`` M (default 5,000) more timers
   are parked, due over ``--catchup-spread`` seconds (default 10); ``--downtime`` seconds (default 20)
   after the last one is due the scheduler is started again. From its spawn: first and last timer
   fired, last continuation enqueued, last continuation started, last execution finished.
4. **Message-to-resume**: ``--messages`` K (default 500) executions of
   ``definitions/await_message.json`` park on a Message state, each with its own correlation value;
   messages are sent at ``--message-rate`` per second (default 50) with
   ``Operations.send_message(key, value, data)`` in this process. Latency = the resumed execution's
   next-state ``entered_at`` (history) minus the time just before the call; the call's own duration
   (database transaction + enqueue) and the Message state's ``exited_at`` are reported beside it.

Verified: every timer execution SUCCEEDED, with exactly one wait row (RESOLVED by ``timer``, due at the
time asked), history = the Wait state once and the Pass state once, never fired or completed before its
due time, its continuation published exactly once, all parked before the first due time; every message
execution SUCCEEDED, resumed exactly once (one wait resolved by ``message``, one ``smq_messages`` row
naming it, the message state and the next state once each in history, the message data in its output);
all bare samples arrived; no dead letters; the queues and the unacked set empty at the end.

The goal judged: the dispatcher enqueues continuations within a second of their due time under normal
load, i.e. part 2's *enqueued* p99 <= 1 s. Exit status 0 only if everything verified and the goal was
met; 1 otherwise (including when the run aborts: what was measured is still printed).

Usage::

    python bench/waiting.py                 # table on stdout, progress on stderr (about 7 minutes)
    python bench/waiting.py --quick         # small sizes, about a minute and a half
    python bench/waiting.py --json          # machine-readable (--save PATH writes it as well)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from harness.lifecycle import Interrupted, RunClock, errors_recorded, stop_on_signals, work_directory
from harness.options import add_database_option, add_output_options, add_redis_option
from harness.report import emit_report
from scenarios.waiting.report import build_report, print_report
from scenarios.waiting.results import Results
from scenarios.waiting.suite import run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute and a half")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, -c 1 each (default 2)")
    parser.add_argument("--bare", type=int, default=None, help="bare Celery tasks (default 1,000)")
    parser.add_argument("--bare-rate", type=float, default=200.0, help="bare tasks sent per second (200)")
    parser.add_argument("--timers", type=int, default=None, help="timers in part 2 (default 10,000)")
    parser.add_argument("--spread", type=float, default=None, help="part 2's due times span (default 60 s)")
    parser.add_argument(
        "--timer-lead", type=float, default=None,
        help="seconds from the start of part 2 to its first due time (default: from the warm-up's parking rate)",
    )  # fmt: skip
    parser.add_argument("--catchup", type=int, default=None, help="timers in part 3 (default 5,000)")
    parser.add_argument(
        "--catchup-spread", type=float, default=None, help="part 3's due times span (default 10 s)"
    )
    parser.add_argument(
        "--downtime",
        type=float,
        default=None,
        help="scheduler restart after part 3's last due (default 20 s)",
    )
    parser.add_argument("--messages", type=int, default=None, help="message executions (default 500)")
    parser.add_argument("--message-rate", type=float, default=50.0, help="messages sent per second (50)")
    parser.add_argument("--warm-timers", type=int, default=None, help="warm-up timers (default 200)")
    add_database_option(parser)
    add_redis_option(parser)
    parser.add_argument("--redis-db", type=int, default=9, help="the workers' Redis db, flushed (default 9)")
    parser.add_argument(
        "--record-db", type=int, default=10, help="db for the bare tasks' samples, flushed (default 10)"
    )
    parser.add_argument(
        "--force-redis",
        action="store_true",
        help="do not check that no other client uses the Redis dbs (at the start and while running)",
    )
    add_output_options(parser)
    parser.add_argument(
        "--log-dir",
        metavar="DIR",
        help="keep the workers' and the scheduler's logs here (default: a temporary dir)",
    )
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: Any, small: Any, full: Any) -> Any:
        return value if value is not None else (small if quick else full)

    args.bare = pick(args.bare, 200, 1_000)
    args.timers = pick(args.timers, 1_000, 10_000)
    args.spread = pick(args.spread, 10.0, 60.0)
    args.catchup = pick(args.catchup, 500, 5_000)
    args.catchup_spread = pick(args.catchup_spread, 5.0, 10.0)
    args.downtime = pick(args.downtime, 5.0, 20.0)
    args.messages = pick(args.messages, 100, 500)
    args.warm_timers = pick(args.warm_timers, 100, 200)
    if min(args.bare, args.timers, args.catchup, args.messages, args.warm_timers, args.workers) < 1:
        parser.error("sizes and --workers must be >= 1")
    if min(args.bare_rate, args.message_rate) <= 0 or args.spread < 0 or args.catchup_spread < 0:
        parser.error("rates must be > 0 and spreads >= 0")
    if args.redis_db == args.record_db:
        parser.error("--redis-db and --record-db must differ")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    clock = RunClock()
    results = Results()
    settings: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        directory = work_directory(stack, args.log_dir, "smq-bench-wait-")
        with errors_recorded(results.errors, KeyboardInterrupt, Interrupted):
            run(args, results, directory, settings)
    report = build_report(args, results, clock, settings)
    emit_report(report, args.save, args.json, lambda: print_report(report, results, args))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
