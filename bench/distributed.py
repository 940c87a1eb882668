"""Distributed execution on Celery workers over Redis: bare Celery vs smq, leader publishing, leader memory.

Everything runs in one invocation, against one Redis server and one fresh PostgreSQL database
(``smq_bench_dist_<pid>``, created next to ``--pg-url``'s, migrated with
``smq.repository.database.upgrade``, dropped at the end). ``--workers`` (default 2) Celery workers are
started by the script as subprocesses, each exactly
``celery -A smq worker -Q critical,default,low -c C --pool prefork`` (plus ``-n`` and ``-l``; C is
``--concurrency``, by default Celery's own default, one pool child per CPU, as the documented worker
command runs; ``--concurrency 1`` serialises each worker: a task's waits leave its CPU idle), with
cwd = the repository, ``SMQ_BROKER_URL`` = Redis db ``--redis-db`` (default 13),
``SMQ_DATABASE_URL`` = the fresh database and ``SMQ_HANDLERS`` = ``bench/bench_handlers.py``, which
registers a no-op task on ``smq.distributed.app.app``. They are terminated at the end. Redis db
``--redis-db`` and the staging db ``--staging-db`` (default 14) are flushed at the start and at the end.

Releasing a backlog at once: each round of parts 1 and 2 publishes its messages to the staging db,
where no worker listens, checks them (``LLEN`` = N), then moves them into the workers' db with one
``MOVE`` of the queue key. Redis wakes the workers' blocked ``BRPOP`` on that key, so all K workers see
the whole backlog at the same moment and no publishing competes with the workers for the 2 CPUs.

Pairs: parts 1 and 2 alternate (each pair followed by a round of part 2b), ``--pairs`` P times (default 5; 2 with ``--quick``): bare round 1,
smq round 1, bare round 2, smq round 2, ... each round with its own N tasks, staged and released as
above. A shared machine's speed drifts over minutes, so two single runs one after the other put that
drift straight into their ratio; a pair's two rounds run back to back and see about the same machine.
Each pair gives a ratio smq_i / bare_i, and the figure judged is the median of the P paired ratios
(for an even P, the mean of the two middle ones). The table also shows every pair's two rates and
ratio, the median of each part's rates, and the details of the median pair's rounds (for an even P,
the pair with the lower middle ratio); the JSON report's ``bare`` and ``smq`` are those rounds,
``smq_over_bare`` the median paired ratio, and ``pairs`` lists every pair.

1. **Bare Celery**: ``--tasks`` N (default 5,000) no-op tasks (``smq_bench.noop``: one Redis ``INCR``,
   no result backend) sent with ``app.send_task`` and released together, on a counter key of the
   round's own. The task that brings the counter to 1 stores its wall time, the one that brings it to
   N stores its own: tasks/s = (N - 1) / (last - first). Verified: the counter ends at exactly N, the
   queue and the unacked set are empty.
2. **smq**: the same N executions of ``definitions/pass3.json`` (3 Pass states) published with
   ``QueueClient.enqueue_many`` (the enqueue ledger in PostgreSQL, ``group()`` chunks of 500), run by
   ``execute_state_machine`` on the same workers. Round i runs its own state machine,
   ``bench-pass3-<i>`` (all put with the pass3 definition before the workers start), so what is
   counted and checked is that round's executions only. Executions/s = N / (latest ``stop_time`` -
   earliest ``start_time``) of that state machine, read from ``smq_executions``. Verified: exactly N
   executions of that state machine, all SUCCEEDED with the output AWS gives, ``history_length`` 3
   and 3 history rows each, no dead letters in the database, queue and unacked set empty.
   Goal: the median paired ratio smq/bare >= 0.5, with every round of both parts verified (one round
   that fails verification fails the result).
   Before the first pair, each worker is warmed up (20 tasks of each kind per worker, not timed, on
   another counter and another state machine): every pool child must have taken a no-op task.
2b. **A task that writes once** (context, not judged): right after each pair's smq round, N tasks
   ``smq_bench.insert_row`` that each INSERT one row (an id and the pass3 input as JSONB, one
   autocommit statement, server-side prepared) into ``smq_bench_rows`` of the bench database and then
   count as the no-op does; tasks/s as part 1, verified as part 1 plus exactly N rows. Reported: the
   median over the rounds of insert_i / bare_i (the most any design that records each task's outcome
   with one durable PostgreSQL write could reach against the no-op here) and of smq_i / insert_i (what
   smq keeps of that), with the same CPU breakdown.
   After the last pair the workers are stopped: parts 3 and 4 publish to the staging db with nobody
   consuming.
3. **Leader publishing**: ``--sources`` M (default 20,000) SUCCEEDED executions are COPY-loaded into
   ``smq_executions``; ``smq.distributed.leader.fan_out`` (keyset pages of the sources, ledger claims,
   ``group()`` chunks of 500) publishes one chained execution per source, timed from the call to its
   return. Then the same payloads (built before the clock starts) are published by a plain loop of
   ``app.send_task`` from one producer. After each, the queue must hold exactly M messages; it is
   deleted between the two. ``--rounds`` R repeats the pair (the ledger is cleared in between) and
   keeps each side's best. Goal: leader/plain >= 0.8.
4. **Leader memory**: ``smq leader --filter state_machine_id=SRC --target DST --json`` (the CLI, in
   distributed mode) runs as a subprocess over 10,000 and then 200,000 COPY-loaded sources. Its peak
   RSS is the kernel's ``VmHWM`` read from ``/proc/self/status`` by the child itself at exit (an
   ``atexit`` hook in a small ``python -c`` wrapper around ``smq.cli.main``), cross-checked by polling
   ``/proc/<pid>/status`` every 50 ms. The CLI must exit 0, report every source enqueued, and the
   queue must hold that many messages. Goal: peak RSS grows < 50 MB from 10k to 200k sources.

For context (not judged): parts 1 and 2 report, for the median pair's two rounds, the CPU time used
while the backlog drained, per task, for the pool children, the workers' main processes, the
PostgreSQL backends connected to the bench database, redis-server, this script, and the whole
machine (from ``/proc``); the rest of the machine is whatever else runs there. The machine's 2 CPUs
are shared by all of them, so the throughput ratio follows the ratio of whole-machine CPU per task.
Part 2 also shows its write transactions per execution and the latency of a bare one-row autocommit
INSERT probed just before the round, and with them the commit-bound rate (K / (writes x commit
latency)). ``--py-spy PATH`` samples the pool children during part 2's first round (wall clock, waits
included) and prints where ``execute_state_machine``'s time goes; that round's figure, and so pair 1's
ratio, is perturbed by the sampling.

Usage::

    python bench/distributed.py                 # table on stdout, progress on stderr
    python bench/distributed.py --json          # machine-readable results
    python bench/distributed.py --quick         # small sizes: a minute's sanity check
    python bench/distributed.py --tasks 10000 --sources 50000 --workers 2 --skip-memory
    python bench/distributed.py --pairs 5 --skip-memory    # more pairs for a steadier median ratio
    python bench/distributed.py --skip-memory --py-spy "$(command -v py-spy)"   # where part 2's time goes

Exit status: 0 when every result verified and every goal was met; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from harness.lifecycle import RunClock, errors_recorded
from harness.options import add_database_option, add_output_options, add_redis_option
from harness.progress import log
from harness.report import emit_report
from scenarios.distributed.report import build_report, print_report
from scenarios.distributed.results import Results
from scenarios.distributed.suite import run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="N for parts 1 and 2 (default 5,000)")
    parser.add_argument("--sources", type=int, default=None, help="M for part 3 (default 20,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="prefork pool children per worker, -c (default: Celery's own, one per CPU)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="bare-then-smq round pairs in parts 1 and 2; median paired ratio judged (default 5; --quick 2)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="leader/plain pairs in part 3, best kept (default 1)"
    )
    parser.add_argument(
        "--memory-sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=None,
        help="sources for the two leader memory runs (default 10,000 200,000)",
    )  # fmt: skip
    parser.add_argument("--skip-memory", action="store_true", help="skip part 4")
    parser.add_argument(
        "--checkpoints",
        choices=("boundaries", "every-state"),
        default=os.environ.get("SMQ_CHECKPOINTS") or "boundaries",
        help="SMQ_CHECKPOINTS for the workers: boundaries (smq's default) or every-state (one write per step)",
    )
    parser.add_argument(
        "--task-events",
        choices=("on", "off"),
        default=os.environ.get("SMQ_TASK_EVENTS") or "on",
        help="SMQ_TASK_EVENTS for workers and clients: Celery task events, what Flower shows (smq's default: on)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: 500 tasks, 2 pairs, 2,000 sources, 1k/20k memory"
    )
    add_database_option(parser)
    add_redis_option(parser)
    parser.add_argument(
        "--redis-db", type=int, default=13, help="the workers' Redis db, flushed (default 13)"
    )
    parser.add_argument(
        "--staging-db", type=int, default=14, help="db where messages are staged, flushed (default 14)"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the pool children with this py-spy during part 2's first round (perturbs that round)",
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (500 if args.quick else 5_000)
    args.pairs = args.pairs or (2 if args.quick else 5)
    args.sources = args.sources or (2_000 if args.quick else 20_000)
    args.memory_sizes = args.memory_sizes or ([1_000, 20_000] if args.quick else [10_000, 200_000])
    counts = (args.sources, args.workers, args.concurrency, args.rounds, args.pairs)
    if args.tasks < 2 or min(counts) < 1:
        parser.error("--tasks must be >= 2, --pairs, --sources, --workers, --concurrency and --rounds >= 1")
    if args.redis_db == args.staging_db:
        parser.error("--redis-db and --staging-db must differ")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["SMQ_CHECKPOINTS"] = args.checkpoints  # the workers inherit it; writes_per_execution reads it
    log(f"SMQ_CHECKPOINTS={args.checkpoints}")
    os.environ["SMQ_TASK_EVENTS"] = args.task_events  # workers inherit it; this process's Celery app too
    log(f"SMQ_TASK_EVENTS={args.task_events}")
    clock = RunClock()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="smq-bench-dist-") as directory, errors_recorded(results.errors):
        run(args, results, Path(directory))
    report = build_report(args, results, clock)
    emit_report(report, args.save, args.json, lambda: print_report(report, results, args))
    return 0 if report["all_goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
