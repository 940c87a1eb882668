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
import gc
import itertools
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine import WORKLOADS, Workload  # bench/engine.py: the same definitions, inputs and outputs
from harness.database import EXECUTION_COLUMNS, commit_latency_ms, copy_executions, writes_per_execution
from harness.figures import MIB
from harness.lifecycle import RunClock
from harness.processes import status_bytes
from harness.progress import load1, log
from harness.report import console, emit_report, judged, load_line, rate_text, simple_table
from harness.servers import DEFAULT_PG_URL, fresh_database
from sqlalchemy import text

from smq import ExecutionFilter, ExecutionRecord, Repository, StartRequest, StateMachine
from smq import start_execution as run_start

BACKENDS = ("sqlite", "postgresql")
GOALS = {"postgresql": 1500.0, "sqlite": 3000.0}  # persisted transitions/s from one process
DEFAULT_THREADS = 4  # the concurrency `smq leader --local` (run_batch) and `smq start --bulk` use by default
STREAM_MACHINE_ID = "stream-bench"
SAMPLE_FRACTIONS = (0.1, 0.5, 1.0)
LOAD_BATCH = 50_000


def start_execution(repo: Repository, request: StartRequest) -> ExecutionRecord:
    """`smq.execution.runner.start_execution` in the SMQ_CHECKPOINTS mode `main` set (the runner
    itself reads no environment)."""
    return run_start(repo, request, checkpoints=os.environ.get("SMQ_CHECKPOINTS") or None)


# ------------------------------------------------------------------ backends


@contextmanager
def sqlite_repository() -> Iterator[Repository]:
    """A migrated SQLite file in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="smq-bench-") as directory:
        repo = Repository.open(f"sqlite:///{directory}/bench.db")
        try:
            yield repo
        finally:
            repo.close()


@contextmanager
def postgresql_repository(admin_url: str) -> Iterator[Repository]:
    """A fresh PostgreSQL database created next to `admin_url`'s, migrated, dropped afterwards."""
    with fresh_database(admin_url, f"smq_bench_{os.getpid()}", migrate=False) as url:
        repo = Repository.open(url, auto_upgrade=True)
        try:
            yield repo
        finally:
            repo.close()


def open_backend(backend: str, args: argparse.Namespace) -> AbstractContextManager[Repository]:
    """The context manager that provides a repository on `backend`."""
    return sqlite_repository() if backend == "sqlite" else postgresql_repository(args.pg_url)


# ------------------------------------------------------------ part 1: throughput


@dataclass
class Rate:
    """Executions and state transitions completed over the time they took."""

    executions: int = 0
    transitions: int = 0
    seconds: float = 0.0

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "executions": self.executions,
            "transitions": self.transitions,
            "seconds": round(self.seconds, 4),
            "executions_per_second": round(self.executions_per_second, 2),
            "transitions_per_second": round(self.transitions_per_second, 2),
        }


@dataclass
class Cell:
    """One workload on one backend: persisted (sequential, then N threads) and in-memory rates."""

    backend: str
    workload: Workload
    ok: bool
    detail: str = ""
    persisted: Rate = field(default_factory=Rate)  # one thread, one execution at a time
    concurrent: Rate = field(default_factory=Rate)  # `threads` threads of this process at once
    threads: int = 0
    memory: Rate = field(default_factory=Rate)
    writes_per_execution: int = 0  # write transactions per execution in the SMQ_CHECKPOINTS mode
    commit_ms: float = 0.0  # one single-row write transaction on this backend, just before timing
    load1: float = 0.0

    @property
    def commit_bound(self) -> float | None:
        """Transitions/s if every write cost exactly one probe commit and nothing else did."""
        if not self.commit_ms or not self.writes_per_execution:
            return None
        return 1000 / (self.commit_ms * self.writes_per_execution) * self.workload.states_entered

    @property
    def goal(self) -> float:
        return GOALS[self.backend]

    @property
    def ratio(self) -> float | None:
        rate = self.memory.executions_per_second
        return self.persisted.executions_per_second / rate if rate else None

    @property
    def best(self) -> tuple[str, Rate]:
        """The better persisted measurement ("sequential" or "concurrent"): the goal is judged on it."""
        if self.threads and self.concurrent.transitions_per_second > self.persisted.transitions_per_second:
            return "concurrent", self.concurrent
        return "sequential", self.persisted

    @property
    def goal_met(self) -> bool:
        return self.ok and self.best[1].transitions_per_second >= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workflow": self.workload.name,
            "states_entered_per_execution": self.workload.states_entered,
            "output_ok": self.ok,
            "detail": self.detail,
            "persisted": self.persisted.as_dict(),
            "persisted_concurrent": {"threads": self.threads, **self.concurrent.as_dict()}
            if self.threads
            else None,
            "in_memory": self.memory.as_dict(),
            "persisted_over_in_memory": None if self.ratio is None else round(self.ratio, 4),
            "goal_transitions_per_second": self.goal,
            "goal_judged_on": self.best[0],
            "best_persisted_transitions_per_second": round(self.best[1].transitions_per_second, 2),
            "goal_met": self.goal_met,
            "writes_per_execution": self.writes_per_execution,
            "commit_ms": round(self.commit_ms, 4),
            "commit_bound_transitions_per_second": None
            if self.commit_bound is None
            else round(self.commit_bound, 1),
            "load1_at_start": self.load1,
        }


def _unique_name() -> str:
    return f"bench-{uuid.uuid4().hex}"


def verify_persisted(repo: Repository, workload: Workload, machine: StateMachine) -> str:
    """Run once persisted and once in memory; '' if they agree (and match AWS), else why not."""
    expected = machine.run(workload.input)
    if expected.status != "SUCCEEDED" or expected.output != workload.expected_output:
        return f"in-memory run gave {expected.status} {json.dumps(expected.output)}"
    record = start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
    if record.status != "SUCCEEDED":
        return f"persisted run {record.status}: {record.error}: {record.cause}"
    if record.output != expected.output:
        return f"persisted output {json.dumps(record.output)} != in-memory {json.dumps(expected.output)}"
    stored = repo.get_execution(record.execution_id)
    if stored.output != expected.output:
        return f"output read back {json.dumps(stored.output)} != in-memory {json.dumps(expected.output)}"
    rows = len(repo.history(record.execution_id))
    if not record.history_length == rows == len(expected.history) == workload.states_entered:
        return (
            f"history_length {record.history_length}, {rows} history rows, {len(expected.history)} "
            f"in memory, expected {workload.states_entered}"
        )
    return ""


def measure_persisted(repo: Repository, workload: Workload, seconds: float) -> Rate:
    """start_execution back to back for `seconds` after a short warm-up; transitions from history_length."""
    warm_until = time.perf_counter() + min(0.3, seconds / 10)
    while time.perf_counter() < warm_until:
        start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
    rate = Rate()
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        record = start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
        if record.status != "SUCCEEDED":
            raise RuntimeError(f"persisted execution {record.status}: {record.error}: {record.cause}")
        rate.executions += 1
        rate.transitions += record.history_length
        now = time.perf_counter()
    rate.seconds = now - start
    return rate


def measure_concurrent(repo: Repository, workload: Workload, seconds: float, threads: int) -> Rate:
    """`threads` threads of this process, each running start_execution back to back (unique names) on
    the shared repository, as `smq leader --local` runs its batch; timed together for `seconds`.

    Every execution still makes its own commits, one per step; what concurrency adds is that the
    database can flush several sessions' commits with one WAL write (group commit), and that one
    thread's Python runs while the others wait for their commits.
    """
    rates = [Rate() for _ in range(threads)]
    errors: list[BaseException] = []
    clock = {"start": 0.0, "deadline": 0.0}

    def set_clock() -> None:  # run by the barrier before it releases anyone: every thread sees it
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    ready = threading.Barrier(threads + 1, action=set_clock)

    def worker(rate: Rate) -> None:
        try:
            warm_until = time.perf_counter() + min(0.3, seconds / 10)
            while time.perf_counter() < warm_until:
                start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
        except BaseException as exc:  # reported by the main thread after the join
            errors.append(exc)
            ready.abort()
            return
        ready.wait()
        try:
            while time.perf_counter() < clock["deadline"]:
                record = start_execution(
                    repo, StartRequest(workload.name, workload.input, name=_unique_name())
                )
                if record.status != "SUCCEEDED":
                    raise RuntimeError(f"persisted execution {record.status}: {record.error}: {record.cause}")
                rate.executions += 1
                rate.transitions += record.history_length
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(rate,), name=f"bench-{i}") for i, rate in enumerate(rates)]
    for thread in pool:
        thread.start()
    try:
        ready.wait()  # every worker has warmed up (and has its own pooled connection)
    except threading.BrokenBarrierError:
        pass  # a worker failed while warming up: reported below
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - clock["start"]
    if errors:
        raise RuntimeError(f"a benchmark thread failed: {errors[0]!r}") from errors[0]
    total = Rate(seconds=elapsed)
    for rate in rates:
        total.executions += rate.executions
        total.transitions += rate.transitions
    return total


def measure_in_memory(machine: StateMachine, workload: Workload, seconds: float) -> Rate:
    """StateMachine.run back to back for `seconds` after a short warm-up; transitions from the history."""
    warm_until = time.perf_counter() + min(0.2, seconds / 10)
    while time.perf_counter() < warm_until:
        machine.run(workload.input)
    rate = Rate()
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        result = machine.run(workload.input)
        rate.executions += 1
        rate.transitions += len(result.history)
        now = time.perf_counter()
    rate.seconds = now - start
    return rate


def stored_history_rows(repo: Repository, state_machine_id: str) -> tuple[int, int]:
    """(sum of history_length, history rows in the table) over one state machine's executions."""
    with repo.reader.connect() as connection:
        claimed = connection.execute(
            text("SELECT coalesce(sum(history_length), 0) FROM smq_executions WHERE state_machine_id = :sm"),
            {"sm": state_machine_id},
        ).scalar_one()
        rows = connection.execute(
            text(
                "SELECT count(*) FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
                "WHERE e.state_machine_id = :sm"
            ),
            {"sm": state_machine_id},
        ).scalar_one()
    return int(claimed), int(rows)


def run_cell(repo: Repository, backend: str, workload: Workload, seconds: float, threads: int) -> Cell:
    """Verify, time persisted (sequential, then `threads` threads), time in memory, then check every
    claimed transition has its history row."""
    definition = workload.definition()
    repo.put_definition(workload.name, definition)
    machine = StateMachine.from_definition(definition)
    cell = Cell(backend, workload, ok=True, load1=load1())
    cell.writes_per_execution = writes_per_execution(machine, workload.input)
    cell.commit_ms = commit_latency_ms(repo, backend)
    cell.detail = verify_persisted(repo, workload, machine)
    if cell.detail:
        cell.ok = False
        return cell
    log(f"{backend}/{workload.name}: persisted, sequential, for {seconds:g}s")
    cell.persisted = measure_persisted(repo, workload, seconds)
    if threads:
        log(f"{backend}/{workload.name}: persisted, {threads} threads, for {seconds:g}s")
        cell.threads = threads
        cell.concurrent = measure_concurrent(repo, workload, seconds, threads)
    log(f"{backend}/{workload.name}: in memory for {seconds:g}s")
    cell.memory = measure_in_memory(machine, workload, seconds)
    claimed, rows = stored_history_rows(repo, workload.name)
    if claimed != rows:
        cell.ok = False
        cell.detail = f"executions claim {claimed} transitions but {rows} history rows are stored"
    return cell


# ------------------------------------------------------------- part 2: streaming


STATUS_MIX = (("SUCCEEDED", 90), ("FAILED", 5), ("RUNNING", 3), ("TIMED_OUT", 1), ("ABORTED", 1))


def _status_table() -> list[str]:
    """100 statuses in the benchmark's proportions, to pick from at random."""
    return [status for status, weight in STATUS_MIX for _ in range(weight)]


def synthetic_rows(count: int, *, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """Execution rows in EXECUTION_COLUMNS order: small JSON, a status mix, start times over 30 days.

    Start times are generated in order but four rows share each timestamp, so the (start_time, id)
    keyset has to break ties on the (random) id.
    """
    rng = random.Random(seed)
    statuses = _status_table()
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    step_us = max(1, (30 * 86_400 * 1_000_000) // max(1, count // 4))
    for index in range(count):
        status = rng.choice(statuses)
        start = origin + timedelta(microseconds=(index // 4) * step_us)
        order = f"A-{index}"
        payload = json.dumps({"order": {"id": order, "customer": f"c-{index % 977}"}, "items": index % 7 + 1})
        running = status == "RUNNING"
        duration = None if running else rng.randrange(5, 5_000)
        stop = None if duration is None else start + timedelta(milliseconds=duration)
        output = json.dumps({"orderId": order, "lane": "express", "total": index % 1000 / 10})
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            f"order-{index}",
            STREAM_MACHINE_ID,
            1,
            status,
            payload,
            output if status == "SUCCEEDED" else None,
            "States.TaskFailed" if status == "FAILED" else None,
            "carrier API returned 503" if status == "FAILED" else None,
            "Label" if running else None,
            json.dumps({"state": "Label", "input": {"orderId": order}}) if running else None,
            rng.randrange(3, 33) if not running else 5,
            start,
            stop,
            duration,
            stop or start,
            None,
            None,
            None,
        )


def _sqlite_time(moment: datetime | None) -> str | None:
    """The text SQLAlchemy's DateTime stores on SQLite: naive UTC, always with microseconds."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def load_sqlite(repo: Repository, rows: Iterable[tuple[Any, ...]]) -> None:
    """executemany on the raw sqlite3 connection, LOAD_BATCH rows per transaction."""
    times = [EXECUTION_COLUMNS.index(name) for name in ("start_time", "stop_time", "updated_at")]
    placeholders = ", ".join("?" for _ in EXECUTION_COLUMNS)
    sql = f"INSERT INTO smq_executions ({', '.join(EXECUTION_COLUMNS)}) VALUES ({placeholders})"
    raw = repo.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, LOAD_BATCH)):
            converted = []
            for row in batch:
                values = list(row)
                for position in times:
                    values[position] = _sqlite_time(values[position])
                converted.append(values)
            connection.execute("BEGIN")
            connection.executemany(sql, converted)
            connection.execute("COMMIT")
        connection.execute("ANALYZE")
    finally:
        raw.close()


@dataclass
class MemorySample:
    """Memory after `rows` executions had been streamed (Python figures only on the traced pass)."""

    fraction: float
    rows: int
    seconds: float
    rss: int
    python_current: int | None = None
    python_peak: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StreamPass:
    """One full iteration of stream_executions: count, order and memory samples."""

    traced: bool
    rows: int = 0
    seconds: float = 0.0
    ordered: bool = True
    first_disorder: str = ""
    samples: list[MemorySample] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def growth(self, attribute: str) -> int | None:
        """Bytes gained between the first (10%) and the last (100%) sample."""
        if len(self.samples) < 2:
            return None
        first, last = getattr(self.samples[0], attribute), getattr(self.samples[-1], attribute)
        return None if first is None or last is None else int(last - first)

    def segment_rates(self) -> list[float]:
        """Rows/s between consecutive samples (0-10%, 10-50%, 50-100%): flat if pages cost the same."""
        rates, rows, seconds = [], 0, 0.0
        for sample in self.samples:
            span = sample.seconds - seconds
            rates.append((sample.rows - rows) / span if span > 0 else 0.0)
            rows, seconds = sample.rows, sample.seconds
        return rates

    def as_dict(self) -> dict[str, Any]:
        return {
            "tracemalloc": self.traced,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "segment_rows_per_second": [round(rate, 1) for rate in self.segment_rates()],
            "ordered": self.ordered,
            "first_disorder": self.first_disorder,
            "samples": [sample.as_dict() for sample in self.samples],
        }


@dataclass
class StreamResult:
    """Loading one backend's synthetic executions, then a timed pass and a tracemalloc pass over them."""

    backend: str
    expected: int
    page_size: int
    flat_limit_mb: float
    load_seconds: float = 0.0
    timed: StreamPass = field(default_factory=lambda: StreamPass(traced=False))
    traced: StreamPass = field(default_factory=lambda: StreamPass(traced=True))
    load1: float = 0.0

    @property
    def python_growth(self) -> int | None:
        return self.traced.growth("python_current")

    @property
    def rss_growth(self) -> int | None:
        return self.timed.growth("rss")

    @property
    def flat(self) -> bool:
        limit = self.flat_limit_mb * MIB
        return all(g is not None and g < limit for g in (self.python_growth, self.rss_growth))

    @property
    def complete(self) -> bool:
        return self.timed.rows == self.traced.rows == self.expected

    @property
    def ordered(self) -> bool:
        return self.timed.ordered and self.traced.ordered

    @property
    def goal_met(self) -> bool:
        return self.flat and self.complete and self.ordered

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "rows_expected": self.expected,
            "page_size": self.page_size,
            "load_seconds": round(self.load_seconds, 3),
            "load_rows_per_second": round(self.expected / self.load_seconds, 1)
            if self.load_seconds
            else None,
            "timed_pass": self.timed.as_dict(),
            "tracemalloc_pass": self.traced.as_dict(),
            "python_growth_bytes": self.python_growth,
            "rss_growth_bytes": self.rss_growth,
            "flat_limit_mb": self.flat_limit_mb,
            "flat": self.flat,
            "complete": self.complete,
            "ordered": self.ordered,
            "goal_met": self.goal_met,
            "load1_at_start": self.load1,
        }


def sample_points(count: int) -> dict[int, float]:
    """Row number at which to sample -> the fraction it stands for."""
    return {max(1, math.ceil(count * fraction)): fraction for fraction in SAMPLE_FRACTIONS}


def _sample(stream: StreamPass, fraction: float, elapsed: float) -> MemorySample:
    """RSS always; tracemalloc's current and peak only while it is tracing."""
    sample = MemorySample(fraction, stream.rows, elapsed, status_bytes("VmRSS"))
    if stream.traced:
        sample.python_current, sample.python_peak = tracemalloc.get_traced_memory()
    return sample


def stream_pass(repo: Repository, stream: StreamPass, expected: int, page_size: int, label: str) -> None:
    """Iterate every synthetic execution, checking strict (start_time, id) order and sampling memory."""
    points = sample_points(expected)
    flt = ExecutionFilter(state_machine_id=STREAM_MACHINE_ID)
    previous: tuple[datetime, str] | None = None
    gc.collect()
    if stream.traced:
        tracemalloc.start()
    try:
        start = time.perf_counter()
        for record in repo.stream_executions(flt, page_size=page_size):
            stream.rows += 1
            key = (record.start_time, record.execution_id)
            if previous is not None and key <= previous and stream.ordered:
                stream.ordered = False
                stream.first_disorder = f"row {stream.rows}: {key} after {previous}"
            previous = key
            fraction = points.get(stream.rows)
            if fraction is not None:
                stream.samples.append(_sample(stream, fraction, time.perf_counter() - start))
                log(f"{label}: {stream.rows:,} rows in {stream.samples[-1].seconds:.1f}s")
        stream.seconds = time.perf_counter() - start
    finally:
        if stream.traced:
            tracemalloc.stop()


def run_stream(repo: Repository, backend: str, count: int, page_size: int, flat_mb: float) -> StreamResult:
    """Bulk-load `count` executions, then stream them all back."""
    result = StreamResult(backend, count, page_size, flat_mb, load1=load1())
    repo.put_definition(STREAM_MACHINE_ID, WORKLOADS[0].definition())
    log(f"{backend}: loading {count:,} executions")
    start = time.perf_counter()
    loader = load_sqlite if backend == "sqlite" else copy_executions
    loader(repo, synthetic_rows(count))
    result.load_seconds = time.perf_counter() - start
    log(f"{backend}: loaded in {result.load_seconds:.1f}s; streaming (timed pass)")
    stream_pass(repo, result.timed, count, page_size, f"{backend} timed pass")
    log(f"{backend}: streaming again under tracemalloc")
    stream_pass(repo, result.traced, count, page_size, f"{backend} tracemalloc pass")
    return result


# ------------------------------------------------------------------------ report


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:+.2f}" if value < 0 else f"{value / MIB:.2f}"


def throughput_table(cells: list[Cell]) -> Any:
    """Persisted vs in-memory rates, one row per backend and workload."""
    from rich.table import Column

    threads = max((cell.threads for cell in cells), default=0)
    mode = os.environ.get("SMQ_CHECKPOINTS") or "boundaries"
    columns = (
        "states/exec", "seq exec/s", "seq trans/s", f"{threads} thr exec/s", f"{threads} thr trans/s",
        "in-mem trans/s", "seq/mem", "writes/exec", "commit ms", "seq commit-bound trans/s", "goal trans/s",
    )  # fmt: skip
    table = simple_table(
        f"Persisted vs in-memory, one process, SMQ_CHECKPOINTS={mode}",
        "backend",
        "workflow",
        *((column, "right") for column in columns),
        Column("goal (on the better)", no_wrap=True),
        ("load1", "right"),
    )
    for cell in cells:
        ratio, bound = cell.ratio, cell.commit_bound
        judged_on = "seq" if cell.best[0] == "sequential" else f"{cell.threads} thr"
        table.add_row(
            cell.backend,
            cell.workload.name,
            str(cell.workload.states_entered),
            rate_text(cell.persisted.executions_per_second),
            rate_text(cell.persisted.transitions_per_second),
            rate_text(cell.concurrent.executions_per_second) if cell.threads else "n/a",
            rate_text(cell.concurrent.transitions_per_second) if cell.threads else "n/a",
            rate_text(cell.memory.transitions_per_second),
            "n/a" if ratio is None else f"{ratio:.2%}",
            str(cell.writes_per_execution),
            f"{cell.commit_ms:.3f}",
            "n/a" if bound is None else rate_text(bound),
            f">={cell.goal:,.0f}",
            f"{judged(cell.goal_met)} ({judged_on})" if cell.ok else "[red]INVALID[/]",
            f"{cell.load1:.2f}",
        )
    return table


def _stream_verdicts(stream: StreamResult) -> list[str]:
    """Flat / complete / ordered, for the first row of a backend."""
    return [
        _mb(stream.python_growth),
        _mb(stream.rss_growth),
        judged(stream.flat, "flat", "NOT flat"),
        judged(stream.complete, "yes", "NO"),
        judged(stream.ordered, "yes", "NO"),
    ]


def stream_table(streams: list[StreamResult]) -> Any:
    """Load and streaming rates, memory at each sample, and the flat/complete/ordered verdicts."""
    columns = (
        "rows", "load rows/s", "stream rows/s", "sample", "at s", "segment rows/s", "RSS MB",
        "py cur MB", "py peak MB", "py growth MB", "RSS growth MB", "memory", "count ok", "order ok",
    )  # fmt: skip
    table = simple_table(
        "Keyset streaming (stream_executions)", "backend", *((column, "right") for column in columns)
    )
    for stream in streams:
        load_rate = stream.expected / stream.load_seconds if stream.load_seconds else 0.0
        traced = {sample.fraction: sample for sample in stream.traced.samples}
        rates = stream.timed.segment_rates()
        for index, sample in enumerate(stream.timed.samples):
            first = index == 0
            python = traced.get(sample.fraction)
            table.add_row(
                stream.backend if first else "",
                f"{stream.expected:,}" if first else "",
                rate_text(load_rate) if first else "",
                rate_text(stream.timed.rows_per_second) if first else "",
                f"{sample.fraction:.0%}",
                f"{sample.seconds:.1f}",
                rate_text(rates[index]),
                _mb(sample.rss),
                "n/a" if python is None else _mb(python.python_current),
                "n/a" if python is None else _mb(python.python_peak),
                *(_stream_verdicts(stream) if first else [""] * 5),
            )
    return table


def print_report(report: dict[str, Any], cells: list[Cell], streams: list[StreamResult]) -> None:
    """Both tables with rich, then the context and any verification failures."""
    out = console(220)
    if cells:
        out.print(throughput_table(cells))
    if streams:
        out.print(stream_table(streams))
        out.print(
            "stream rows/s and RSS come from an untraced pass; py cur/peak (tracemalloc) from a second, "
            "traced pass over the same rows. Growth is the 100% sample minus the 10% sample."
        )
    out.print(f"{load_line(report)}; all goals met: {report['all_goals_met']}")
    for cell in cells:
        if cell.detail:
            out.print(f"[red]{cell.backend}/{cell.workload.name}: {cell.detail}[/]")
    for stream in streams:
        for one in (stream.timed, stream.traced):
            if one.first_disorder:
                out.print(f"[red]{stream.backend}: first out-of-order row: {one.first_disorder}[/]")


def build_report(
    args: argparse.Namespace, cells: list[Cell], streams: list[StreamResult], clock: RunClock
) -> dict[str, Any]:
    """Results plus enough context to compare runs from different machines."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **clock.figures(),
        "settings": {
            "seconds": args.seconds,
            "threads": args.threads,
            "checkpoints": args.checkpoints,
            "stream_rows": args.stream_rows,
            "page_size": args.page_size,
            "flat_mb": args.flat_mb,
            "backends": args.backends,
        },
        "goals_transitions_per_second": GOALS,
        "throughput": [cell.as_dict() for cell in cells],
        "streaming": [stream.as_dict() for stream in streams],
        "all_goals_met": all_met(cells, streams),
    }


def all_met(cells: list[Cell], streams: list[StreamResult]) -> bool:
    return all(cell.goal_met for cell in cells) and all(stream.goal_met for stream in streams)


# -------------------------------------------------------------------------- main


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
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help=f"an existing database to connect to ({DEFAULT_PG_URL})"
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON instead of tables")
    parser.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
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
