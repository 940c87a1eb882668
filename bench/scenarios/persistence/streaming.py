"""Part 2 of bench/persistence.py: keyset streaming of a million executions in flat memory.

Synthetic executions are bulk-loaded, then ``repo.stream_executions`` reads them all back twice: a
timed pass (rows/s, RSS at 10%, 50% and 100%) and a pass under tracemalloc. Memory is flat when
neither grows by more than ``--flat-mb`` from the 10% to the 100% sample; both passes check the count
and the strict (start_time, id) order."""

from __future__ import annotations

import gc
import itertools
import json
import math
import random
import time
import tracemalloc
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.database import EXECUTION_COLUMNS, copy_executions
from harness.figures import MIB
from harness.processes import status_bytes
from harness.progress import load1, log

from scenarios.engine.workloads import WORKLOADS
from smq import ExecutionFilter, Repository

STREAM_MACHINE_ID = "stream-bench"
SAMPLE_FRACTIONS = (0.1, 0.5, 1.0)
LOAD_BATCH = 50_000
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
