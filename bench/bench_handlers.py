"""Worker-side half of ``bench/distributed.py`` and ``bench/waiting.py``: bare Celery tasks for their
baselines.

``bench/distributed.py`` starts its workers with ``SMQ_HANDLERS=<this file>``; smq's ``worker_init``
hook imports it in the worker's main process before the pool forks, so the tasks below are registered
on ``smq.distributed.app.app`` next to ``execute_state_machine`` and every pool child has it.

``smq_bench.noop`` does the least a task can do and still be counted without a result backend: one Redis
``INCR`` on a counter in the broker's database. The completion that brings the counter to 1 stores
its wall-clock time under ``<key>:first``, the one that brings it to ``expected`` under ``<key>:last``
(two extra round trips per run, not per task). With ``pids_key`` (warm-up only) the pool child's pid
is added to a set, so the benchmark can check that every worker took part.

``smq_bench.insert_row`` (``bench/distributed.py``'s durable-write reference) does what ``noop`` does
after one autocommit ``INSERT`` of a row (an id and a JSONB payload, sent as JSON text as smq sends its
own) into ``smq_bench_rows`` of the database named by ``SMQ_DATABASE_URL``, on one psycopg connection
per process, the statement server-side prepared: the least a task that records its result durably in
PostgreSQL does.

``smq_bench.latency`` (``bench/waiting.py``) is the enqueue-to-start baseline: it is sent with its
sender's wall-clock time and, first thing when it runs, appends ``"<sent> <started>"`` to a Redis list
in the database named by ``SMQ_BENCH_RECORD_URL`` (the broker's database when unset).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from smq import TaskContext, handler
from smq.distributed.app import app
from smq.engine.jsontext import compact

NOOP_TASK = "smq_bench.noop"
INSERT_TASK = "smq_bench.insert_row"
LATENCY_TASK = "smq_bench.latency"

T = TypeVar("T")


def _per_process(open_connection: Callable[[], T]) -> Callable[[], T]:
    """`open_connection()` once per process: a connection must not cross the pool's fork, so each pool
    child opens its own on first use (what the parent opened is left to the parent)."""
    opened: dict[int, T] = {}

    def connection() -> T:
        pid = os.getpid()
        if pid not in opened:
            opened.clear()
            opened[pid] = open_connection()
        return opened[pid]

    return connection


_redis = _per_process(lambda: redis.Redis.from_url(app.conf.broker_url))


@app.task(name=NOOP_TASK, ignore_result=True)
def noop(key: str, expected: int, pids_key: str | None = None) -> None:
    """Count one completion; timestamp the first and the `expected`-th."""
    client = _redis()
    done = client.incr(key)
    if done == 1:
        client.set(f"{key}:first", repr(time.time()))
    if done == expected:
        client.set(f"{key}:last", repr(time.time()))
    if pids_key is not None:
        client.sadd(pids_key, os.getpid())


def _open_database() -> Any:
    """An autocommit psycopg connection to SMQ_DATABASE_URL."""
    import psycopg

    url = os.environ["SMQ_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    return psycopg.connect(url, autocommit=True)


_database = _per_process(_open_database)


@app.task(name=INSERT_TASK, ignore_result=True)
def insert_row(key: str, expected: int, row_id: str, payload: Any) -> None:
    """One durable row in PostgreSQL, then counted as `noop` counts."""
    _database().execute(
        "INSERT INTO smq_bench_rows (id, payload) VALUES (%s, CAST(%s AS jsonb))",
        (row_id, compact(payload)),
        prepare=True,
    )
    noop(key, expected)


# Where latency samples go: SMQ_BENCH_RECORD_URL, else the broker's db.
_record_client = _per_process(
    lambda: redis.Redis.from_url(os.environ.get("SMQ_BENCH_RECORD_URL") or app.conf.broker_url)
)


@app.task(name=LATENCY_TASK, ignore_result=True)
def latency(key: str, sent: float) -> None:
    """Record when this task started, beside when it was sent (both wall clock, same host)."""
    started = time.time()
    _record_client().rpush(key, f"{sent!r} {started!r}")


# ------------------------------------------------------------------ bench/faults.py

FAULT_STEP = "smq_bench.fault_step"


def _append(path: str, line: str) -> None:
    """One short O_APPEND write: concurrent processes' lines never interleave, and a SIGKILL leaves
    either the whole line or none of it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@handler(FAULT_STEP)
def fault_step(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A Task of ``definitions/fault_soak.json``: logs ``start`` when called and ``end`` just before it
    returns (execution, state, a fresh call id, pid) to the file named by ``calls``. A call with an
    ``end`` line completed; one without was interrupted (SIGKILL) and may legitimately run again."""
    call = uuid.uuid4().hex[:12]
    where = f"{ctx.execution_name} {ctx.state_name} {call} {os.getpid()}"
    _append(payload["calls"], f"start {where}\n")
    result = {"ok": True, "pid": os.getpid()}
    _append(payload["calls"], f"end {where}\n")
    return result
