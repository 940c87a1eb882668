"""Persisted executions per second, and keyset streaming of a million executions, on SQLite and PostgreSQL.

Part 1, the cost of durability: for each workload of ``bench/engine.py`` (same definitions, same
inputs) and each backend, persisted executions are timed twice, each for ``--seconds``:

- sequential: ``start_execution(repo, StartRequest(...))`` back to back in the main thread, one
  execution at a time;
- concurrent: ``--threads`` threads (default 4, the concurrency ``smq leader --local`` runs its batch
  with) in this same process, each calling ``start_execution`` back to back with unique names on the
  one shared repository (its connection pool). Each thread warms up, then all start together and stop
  at the same deadline; the rate is the sum over threads divided by the wall time.

Either way every state transition is checkpointed on its own (history rows plus cursor in one
transaction, one commit per step, plus the RUNNING insert): concurrency only lets the database flush
several sessions' commits with one WAL write (group commit) and lets one thread's Python run while the
others wait for their commits. Transitions are read back from ``record.history_length`` (one history
row per state entered) and checked against the history rows actually in the database after both
loops. The same workflow then runs in memory (``StateMachine.from_definition(d).run(input)``) for the
same time, and the ratio sequential-persisted/in-memory is the cost of durability. The persisted output
is compared with the in-memory output (and with what AWS returns) before any timing. The goal (per
backend, in transitions/s from one process) is judged on the better of the sequential and the
concurrent rate; both are printed, labelled. For context each row also shows the write transactions
per execution (in the SMQ_CHECKPOINTS mode of ``--checkpoints``) and the latency of a bare one-row
commit on that backend, measured just before: together they bound what a commit-per-step design can
reach on this disk from ONE connection ("seq commit-bound"; concurrent sessions share WAL flushes, so
the concurrent rate can exceed it).

Part 2, keyset streaming: ``--stream-rows`` execution rows (default 1,000,000) are bulk-loaded
(PostgreSQL: COPY on the raw psycopg connection; SQLite: executemany in large transactions), then
``repo.stream_executions(ExecutionFilter(state_machine_id=...), page_size=1000)`` reads all of them
back twice: a timed pass (rows/s overall and between samples, VmRSS at 10%, 50% and 100%) and a
pass under tracemalloc (current and peak Python allocations at the same points; tracemalloc slows
Python 4-5x, so its pass is not timed). Memory is flat when neither the tracemalloc current nor
the RSS grows by more than ``--flat-mb`` from the 10% to the 100% sample. Both passes check the
count and the strict (start_time, id) ordering.

Usage::

    python bench/persistence.py                       # table on stdout, progress on stderr
    python bench/persistence.py --json                # machine-readable results
    python bench/persistence.py --seconds 2 --stream-rows 100000   # a quick run
    python bench/persistence.py --threads 8           # the concurrent measurement with 8 threads
    python bench/persistence.py --threads 0           # sequential only
    python bench/persistence.py --save results.json  # table, and the JSON written to a file

SQLite lives in a temporary directory; PostgreSQL gets a fresh database (``smq_bench_<pid>``)
created through ``--pg-url`` (default: the local ``test`` database) and dropped at the end.

Exit status: 0 when every output verified and every goal was met (persisted transitions/s per
backend, flat memory, complete and ordered stream), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from harness.lifecycle import RunClock
from harness.options import add_database_option, add_output_options
from harness.report import emit_report
from scenarios.engine.workloads import WORKLOADS
from scenarios.persistence.backends import BACKENDS, open_backend
from scenarios.persistence.report import build_report, print_report
from scenarios.persistence.streaming import StreamResult, run_stream
from scenarios.persistence.throughput import DEFAULT_THREADS, Cell, run_cell


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing per cell, each side (default 5)")
    parser.add_argument(
        "--stream-rows", type=int, default=1_000_000, help="executions to load and stream (default 1,000,000)"
    )
    parser.add_argument(
        "--page-size", type=int, default=1000, help="stream_executions page size (default 1000)"
    )
    parser.add_argument(
        "--flat-mb", type=float, default=5.0, help="max growth from the 10%% to the 100%% sample (default 5)"
    )
    parser.add_argument(
        "--backend",
        dest="backends",
        action="append",
        choices=BACKENDS,
        help="run only this backend (repeatable; default both)",
    )
    parser.add_argument(
        "--workflow",
        action="append",
        choices=[w.name for w in WORKLOADS],
        help="only this workflow (repeatable)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"threads for the concurrent persisted measurement (default {DEFAULT_THREADS}, as `smq leader "
        "--local`); 0 measures sequentially only",
    )
    parser.add_argument("--skip-stream", action="store_true", help="measure throughput only")
    parser.add_argument(
        "--checkpoints",
        choices=("boundaries", "every-state"),
        default=os.environ.get("SMQ_CHECKPOINTS") or "boundaries",
        help="SMQ_CHECKPOINTS for the persisted runs: boundaries (smq's default: side-effect-free steps "
        "share the next write) or every-state (one write per step)",
    )
    add_database_option(parser)
    add_output_options(parser, "print results as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error("--threads must be 0 or more")
    args.backends = args.backends or list(BACKENDS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["SMQ_CHECKPOINTS"] = args.checkpoints  # read by start_execution and writes_per_execution
    clock = RunClock()
    workloads = [w for w in WORKLOADS if not args.workflow or w.name in args.workflow]
    cells: list[Cell] = []
    streams: list[StreamResult] = []
    for backend in args.backends:
        with open_backend(backend, args) as repo:
            for workload in workloads:
                cells.append(run_cell(repo, backend, workload, args.seconds, args.threads))
            if not args.skip_stream and args.stream_rows > 0:
                streams.append(run_stream(repo, backend, args.stream_rows, args.page_size, args.flat_mb))
    report = build_report(args, cells, streams, clock)
    emit_report(report, args.save, args.json, lambda: print_report(report, cells, streams))
    return 0 if report["all_goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
