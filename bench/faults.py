"""Self-healing soak (issue 16): N executions under one fault at a time, counted.

Each fault runs on fresh servers of its own: a private PostgreSQL cluster (initdb on a free port; the
database ``smq_bench_faults_<pid>`` created in it and migrated with ``smq.repository.database.upgrade``)
and a private ``redis-server`` (append-only file, fsync every second, no eviction: as
docker-compose.yml runs it). On them run the documented processes and nothing else:

- ``--workers`` K (default 2) ``celery -A smq worker -Q critical,default,low -c C`` (C = ``--concurrency``,
  default 2 pool processes each), ``SMQ_HANDLERS=bench/bench_handlers.py``;
- one ``smq scheduler`` (timers, crash recovery, and healing what the broker lost);
- ``smq start fault-soak --inputs FILE.jsonl --name-prefix P``, which enqueues the N executions.

The machine (``definitions/fault_soak.json``) is Task, Wait ``--wait`` seconds (2; below
``SMQ_PARK_AFTER``, so it waits inline in the pool process), Choice, Task, Succeed. Both Tasks are
``smq_bench.fault_step``, which appends ``start`` when called and ``end`` just before it returns (one
O_APPEND line each, with a call id) to a calls log. A Task of one execution whose call logged ``end`` and
that is called again afterwards is a *completed Task run twice*; a call cut by a SIGKILL (``start``
without ``end``) that runs again is legitimate and only counted in the notes.

Then the fault (one per run, mid-batch = once a quarter of the executions have finished), and the
bench waits until every execution is final, or until nothing has finished for ``--settle`` seconds
(120) and the fault ended at least as long ago: what is not final then is *stuck*. Counted per fault:
SUCCEEDED, stuck, duplicate executions (names with more than one execution row), completed Tasks run
twice, dead letters (by reason), commands needed (always 0: the bench never runs a repair command,
only the processes above), the time from ``smq start`` to the last execution's end, and for the
Redis-emptied faults the seconds from Redis answering again to the last execution's end.

Goals (the exit status is 1 if any is missed): N SUCCEEDED, 0 stuck, 0 duplicated, 0 completed Tasks
repeated, no worker or scheduler died that the bench did not kill; after Redis restarted empty,
everything done within 60 s of Redis coming back; for bad messages, one dead letter per bad message.
For ``start-kill`` the N names are only those the killed ``smq start`` claimed before it died: names it
never read into the ledger cannot be known to anything but a re-run (they are reported as "never
claimed"; the goal is judged on the claimed ones).

Usage::

    python bench/faults.py                            # 2,000 executions x every fault (hours on 2 CPUs)
    python bench/faults.py --quick                    # 200 executions per fault
    python bench/faults.py --executions 500 --faults none,redis-empty,purge --json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import traceback

from harness.lifecycle import Interrupted, RunClock, stop_on_signals, work_directory
from harness.options import add_output_options
from harness.progress import log
from harness.report import emit_report, source_state
from scenarios.faults.catalogue import FAULTS
from scenarios.faults.report import print_tables, settings_used
from scenarios.faults.results import Row
from scenarios.faults.run import Run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--executions", type=int, default=None, help="executions per fault (2,000; --quick 200)"
    )
    parser.add_argument("--quick", action="store_true", help="200 executions per fault")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, in this order by default: {','.join(FAULTS)}",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (2)")
    parser.add_argument("--wait", type=float, default=2.0, help="the machine's Wait, seconds (2)")
    parser.add_argument(
        "--settle",
        type=float,
        default=120.0,
        help="stuck = not final after this long without progress (120 s)",
    )
    add_output_options(parser, "print the results as JSON instead of the table")
    parser.add_argument(
        "--log-dir", metavar="DIR", help="keep every fault's logs here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    if args.executions is None:
        args.executions = 200 if args.quick else 2_000
    args.fault_list = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = [name for name in args.fault_list if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    if args.executions < 4 or args.workers < 1 or args.concurrency < 1:
        parser.error("--executions must be >= 4, --workers and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    clock = RunClock()
    rows: list[Row] = []
    errors: list[str] = []
    with contextlib.ExitStack() as outer:
        base = work_directory(outer, args.log_dir, "smq-bench-faults-")
        for fault in args.fault_list:
            log(f"{fault}: {FAULTS[fault]} ({args.executions:,} executions; logs in {base / fault})")
            directory = base / fault
            directory.mkdir(parents=True, exist_ok=True)
            row = Row(fault, args.executions, expected=args.executions)
            try:
                with contextlib.ExitStack() as stack:
                    run = Run(fault, args, directory, stack)
                    row = run.row
                    run.execute()
            except (Exception, KeyboardInterrupt, Interrupted) as exc:
                row.error = f"{type(exc).__name__}: {exc}"
                errors.append(f"{fault}: {row.error}")
                log(f"{fault} aborted:\n{traceback.format_exc()}")
                if isinstance(exc, KeyboardInterrupt | Interrupted):
                    rows.append(row)
                    break
            rows.append(row)
            missed = row.misses()
            log(f"  {fault}: {row.succeeded:,}/{row.expected:,} SUCCEEDED; {'; '.join(missed) or 'goal met'}")
    import celery

    report = {
        "python": platform.python_version(),
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "source": source_state(),
        **clock.figures(),
        "settings": settings_used(args),
        "rows": [row.as_dict() for row in rows],
        "errors": errors,
        "ok": bool(rows) and len(rows) == len(args.fault_list) and not any(row.misses() for row in rows),
    }
    emit_report(report, args.save, args.json, lambda: print_tables(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
