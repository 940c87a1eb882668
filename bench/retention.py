"""Retention: how fast `smq executions prune` deletes, against a plain DELETE of the same rows, and how
long each makes a concurrent writer wait.

For each backend (SQLite file, fresh PostgreSQL database) and each of two ways, on the same database
and the same freshly seeded data:

- **smq**: ``Retention.prune(cutoff)`` (what ``smq executions prune`` and the scheduler run): batches of
  ``--batch-size`` executions (500), one short transaction each, deleting history, waits, chain links,
  ledger claims and the executions;
- **baseline**: a plain DELETE of the same rows, one statement per table (``DELETE ... WHERE
  execution_id IN (SELECT id FROM smq_executions WHERE status IN (...) AND stop_time < cutoff)``) in
  one transaction: the fastest way, holding its locks until it ends.

Seeded: ``--executions`` old finished executions (ended 40 days ago, prunable), each with
``--history`` history rows, a wait and a ledger claim, chained one to the next, plus 1,000 recent ones
that must stay. Meanwhile a writer process records one new execution and one history row every 5 ms
(what a worker's checkpoints do); each write's latency is kept. The report gives executions deleted per
second for both ways, their ratio (smq / baseline), and the writer's longest and p99 wait during each:
with a single big transaction SQLite writers wait for all of it; with batches only for one batch.

Every run is verified: the old executions and every row of theirs are gone, the recent ones and the
writer's are all there.

Usage::

    python bench/retention.py                                  # both backends, 20,000 executions
    python bench/retention.py --executions 100000 --history 5  # bigger
    python bench/retention.py --backend sqlite --json

PostgreSQL gets a fresh database (``smq_bench_retention_<pid>``) created through ``--pg-url`` (an
admin URL) and dropped at the end; SQLite lives in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, tuple_
from support import fresh_database, load1, log

from smq.repository.repository import Repository
from smq.repository.retention import FINAL, Retention
from smq.repository.tables import CHAIN_LINKS, ENQUEUED, EXECUTIONS, HISTORY, WAITS

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RECENT = 1000
CHUNK = 5000
WRITE_EVERY = 0.005
TABLES = ("smq_history", "smq_waits", "smq_chain_links", "smq_enqueued", "smq_executions")


@contextmanager
def backend_repository(backend: str, admin_url: str) -> Iterator[Repository]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="smq-bench-retention-") as directory:
            repository = Repository.open(f"sqlite:///{directory}/bench.db")
            try:
                yield repository
            finally:
                repository.close()
        return
    with fresh_database(admin_url, f"smq_bench_retention_{os.getpid()}") as url:
        repository = Repository.open(url)
        try:
            yield repository
        finally:
            repository.close()


def seed(repository: Repository, executions: int, history: int) -> tuple[list[str], list[str]]:
    """The old (prunable) and recent executions' ids, with their rows."""
    now = datetime.now(UTC)
    old_stop, recent_stop = now - timedelta(days=40), now - timedelta(days=1)
    with repository.engine.begin() as connection:
        for table in TABLES:
            connection.execute(text(f"DELETE FROM {table}"))
    old = [f"old-{i:07d}" for i in range(executions)]
    recent = [f"recent-{i:05d}" for i in range(RECENT)]
    for ids, stop in ((old, old_stop), (recent, recent_stop)):
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            with repository.engine.begin() as connection:
                connection.execute(
                    EXECUTIONS.insert(),
                    [
                        {
                            "id": execution_id,
                            "name": execution_id,
                            "state_machine_id": "bench",
                            "version": 1,
                            "status": "SUCCEEDED" if n % 5 else "FAILED",
                            "input": {"order": n},
                            "output": {"order": n, "ok": True},
                            "start_time": stop - timedelta(seconds=1),
                            "stop_time": stop + timedelta(microseconds=start + n),
                            "updated_at": stop,
                            "history_length": history,
                        }
                        for n, execution_id in enumerate(chunk)
                    ],
                )
                connection.execute(
                    HISTORY.insert(),
                    [
                        {
                            "execution_id": execution_id,
                            "sequence": sequence,
                            "state_name": f"S{sequence}",
                            "state_type": "Task",
                            "status": "SUCCEEDED",
                            "scope": "",
                            "attempt": 1,
                            "input": {"order": 1},
                            "output": {"order": 1, "ok": True},
                            "entered_at": stop,
                            "exited_at": stop,
                        }
                        for execution_id in chunk
                        for sequence in range(1, history + 1)
                    ],
                )
                connection.execute(
                    WAITS.insert(),
                    [
                        {
                            "id": f"w-{execution_id}",
                            "execution_id": execution_id,
                            "history_length": 1,
                            "kind": "timer",
                            "status": "RESOLVED",
                            "due_at": stop,
                            "queue": "default",
                            "created_at": stop,
                        }
                        for execution_id in chunk
                    ],
                )
                connection.execute(
                    CHAIN_LINKS.insert(),
                    [
                        {
                            "source_execution_id": source,
                            "target_execution_id": target,
                            "target_state_machine_id": "bench",
                            "created_at": stop,
                        }
                        for source, target in zip(chunk, chunk[1:], strict=False)
                    ],
                )
                connection.execute(
                    ENQUEUED.insert(),
                    [
                        {
                            "state_machine_id": "bench",
                            "name": execution_id,
                            "task_id": "t",
                            "queue": "default",
                            "enqueued_at": stop,
                        }
                        for execution_id in chunk
                    ],
                )
    if repository.engine.dialect.name == "postgresql":
        with repository.engine.begin() as connection:
            for table in TABLES:
                connection.execute(text(f"ANALYZE {table}"))
    return old, recent


class Writer:
    """Another process making a checkpoint-like write every 5 ms (one execution row and one history row,
    one transaction), as a worker does; each write's start and latency are kept (perf_counter is the
    system's monotonic clock, the same in both processes)."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.results: Any = context.Queue()
        self.process = context.Process(target=write_loop, args=(url, self.stop, self.results), daemon=True)
        self.writes: list[tuple[float, float]] = []
        self.ids: list[str] = []

    def start(self) -> None:
        self.process.start()
        if self.results.get(timeout=60) != "ready":
            raise SystemExit("the writer did not start")

    def finish(self) -> None:
        self.stop.set()
        self.writes, self.ids = self.results.get(timeout=60)
        self.process.join(10)


def write_loop(url: str, stop: Any, results: Any) -> None:
    repository = Repository.open(url)
    writes: list[tuple[float, float]] = []
    ids: list[str] = []
    results.put("ready")
    n = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        execution_id = f"live-{os.getpid()}-{n:07d}"
        started = time.perf_counter()
        with repository.engine.begin() as connection:
            connection.execute(
                EXECUTIONS.insert().values(
                    id=execution_id,
                    name=execution_id,
                    state_machine_id="live",
                    version=1,
                    status="RUNNING",
                    start_time=now,
                    updated_at=now,
                    history_length=1,
                )
            )
            connection.execute(
                HISTORY.insert().values(
                    execution_id=execution_id,
                    sequence=1,
                    state_name="S",
                    state_type="Task",
                    status="SUCCEEDED",
                    scope="",
                    attempt=1,
                    entered_at=now,
                    exited_at=now,
                )
            )
        writes.append((started, time.perf_counter() - started))
        ids.append(execution_id)
        n += 1
        stop.wait(WRITE_EVERY)
    repository.close()
    results.put((writes, ids))


def plain_delete(repository: Repository, cutoff: datetime) -> None:
    """The baseline: every table's rows in one statement each, one transaction."""
    c = EXECUTIONS.c
    doomed = select(c.id).where(c.status.in_(FINAL), c.stop_time < cutoff)
    with repository.engine.begin() as connection:
        connection.execute(HISTORY.delete().where(HISTORY.c.execution_id.in_(doomed)))
        connection.execute(WAITS.delete().where(WAITS.c.execution_id.in_(doomed)))
        connection.execute(
            CHAIN_LINKS.delete().where(
                CHAIN_LINKS.c.source_execution_id.in_(doomed) | CHAIN_LINKS.c.target_execution_id.in_(doomed)
            )
        )
        connection.execute(
            ENQUEUED.delete().where(
                tuple_(ENQUEUED.c.state_machine_id, ENQUEUED.c.name).in_(
                    select(c.state_machine_id, c.name).where(c.status.in_(FINAL), c.stop_time < cutoff)
                )
            )
        )
        connection.execute(EXECUTIONS.delete().where(c.status.in_(FINAL), c.stop_time < cutoff))


def count(repository: Repository, table: Any, *clauses: Any) -> int:
    with repository.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*clauses)).scalar_one())


def verify(repository: Repository, old: list[str], recent: list[str], writer: Writer) -> list[str]:
    problems = []
    like_old = EXECUTIONS.c.id.like("old-%")
    for table, clause in (
        (EXECUTIONS, like_old),
        (HISTORY, HISTORY.c.execution_id.like("old-%")),
        (WAITS, WAITS.c.execution_id.like("old-%")),
        (CHAIN_LINKS, CHAIN_LINKS.c.source_execution_id.like("old-%")),
        (ENQUEUED, ENQUEUED.c.name.like("old-%")),
    ):
        left = count(repository, table, clause)
        if left:
            problems.append(f"{left} old row(s) left in {table.name}")
    kept = count(repository, EXECUTIONS, EXECUTIONS.c.id.like("recent-%"))
    kept_history = count(repository, HISTORY, HISTORY.c.execution_id.like("recent-%"))
    if kept != len(recent) or not kept_history:
        problems.append(f"recent executions: {kept} of {len(recent)} kept, {kept_history} history rows")
    live = count(repository, EXECUTIONS, EXECUTIONS.c.state_machine_id == "live")
    if live != len(writer.ids):
        problems.append(f"writer: {live} of {len(writer.ids)} executions there")
    return problems


def measure(repository: Repository, how: str, args: argparse.Namespace) -> dict[str, Any]:
    old, recent = seed(repository, args.executions, args.history)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    writer = Writer(repository.engine.url.render_as_string(hide_password=False))
    writer.start()
    time.sleep(0.3)  # the writer's steady state before the deletion
    started = time.perf_counter()
    if how == "smq":
        deleted = Retention(repository.engine, batch_size=args.batch_size).prune(cutoff)
        batches = deleted.batches
        if deleted.executions != len(old):
            raise SystemExit(f"smq prune deleted {deleted.executions}, expected {len(old)}")
    else:
        plain_delete(repository, cutoff)
        batches = 1
    elapsed = time.perf_counter() - started
    time.sleep(0.3 + elapsed)  # a write blocked by the deletion ends after it: let it be recorded
    # The writes that began while the deletion ran, and how long each had to wait.
    writer.finish()
    during = [took for began, took in writer.writes if started <= began <= started + elapsed]
    problems = verify(repository, old, recent, writer)
    ordered = sorted(during) or [0.0]
    return {
        "way": how,
        "executions": len(old),
        "seconds": round(elapsed, 3),
        "executions_per_s": round(len(old) / elapsed, 1),
        "transactions": batches,
        "writer_writes": len(during),
        "writer_max_ms": round(ordered[-1] * 1000, 1),
        "writer_p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 1),
        "writer_median_ms": round(statistics.median(ordered) * 1000, 2),
        "verified": not problems,
        "problems": problems,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--executions", type=int, default=20_000, help="old (prunable) executions")
    parser.add_argument("--history", type=int, default=5, help="history rows per execution")
    parser.add_argument("--batch-size", type=int, default=500, help="executions per prune transaction")
    parser.add_argument("--pg-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL admin URL")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results: dict[str, Any] = {"load1_start": load1(), "backends": {}}
    for backend in backends:
        with backend_repository(backend, args.pg_url) as repository:
            runs = {}
            for how in ("baseline", "smq"):
                log(f"{backend}: {how}: seeding {args.executions:,} executions x {args.history} history rows")
                runs[how] = measure(repository, how, args)
                log(f"{backend}: {how}: {runs[how]}")
            ratio = runs["smq"]["executions_per_s"] / runs["baseline"]["executions_per_s"]
            results["backends"][backend] = {**runs, "ratio_smq_over_baseline": round(ratio, 3)}
    results["load1_end"] = load1()
    ok = all(
        run["verified"] for entry in results["backends"].values() for run in (entry["smq"], entry["baseline"])
    )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0 if ok else 1
    print(
        f"retention: {args.executions:,} old executions x {args.history} history rows, batches of "
        f"{args.batch_size} (load {results['load1_start']} -> {results['load1_end']})"
    )
    header = f"{'backend':<11}{'way':<10}{'exec/s':>10}{'seconds':>9}{'txns':>6}{'writer max ms':>15}{'p99 ms':>8}{'writes':>8}"
    print(header)
    for backend, entry in results["backends"].items():
        for how in ("baseline", "smq"):
            run = entry[how]
            print(
                f"{backend:<11}{how:<10}{run['executions_per_s']:>10,.0f}{run['seconds']:>9.2f}{run['transactions']:>6}"
                f"{run['writer_max_ms']:>15.1f}{run['writer_p99_ms']:>8.1f}{run['writer_writes']:>8}"
                + ("" if run["verified"] else f"  NOT VERIFIED: {run['problems']}")
            )
        print(f"{backend:<11}ratio smq/baseline: {entry['ratio_smq_over_baseline']:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
