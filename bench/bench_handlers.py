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

import json
import os
import time
from typing import Any

import redis

from smq.distributed.app import app

NOOP_TASK = "smq_bench.noop"
INSERT_TASK = "smq_bench.insert_row"
LATENCY_TASK = "smq_bench.latency"

_client: redis.Redis | None = None
_client_pid = 0
_records: redis.Redis | None = None
_records_pid = 0
_postgres: Any = None
_postgres_pid = 0


def _redis() -> redis.Redis:
    """One client per process (a connection must not cross the pool's fork)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(app.conf.broker_url)
        _client_pid = os.getpid()
    return _client


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


def _database() -> Any:
    """One autocommit psycopg connection per process to SMQ_DATABASE_URL (opened after the fork)."""
    global _postgres, _postgres_pid
    if _postgres is None or _postgres_pid != os.getpid():
        import psycopg

        url = os.environ["SMQ_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        _postgres = psycopg.connect(url, autocommit=True)
        _postgres_pid = os.getpid()
    return _postgres


@app.task(name=INSERT_TASK, ignore_result=True)
def insert_row(key: str, expected: int, row_id: str, payload: Any) -> None:
    """One durable row in PostgreSQL, then counted as `noop` counts."""
    _database().execute(
        "INSERT INTO smq_bench_rows (id, payload) VALUES (%s, CAST(%s AS jsonb))",
        (row_id, json.dumps(payload, separators=(",", ":"))),
        prepare=True,
    )
    noop(key, expected)


def _record_client() -> redis.Redis:
    """Where latency samples go: SMQ_BENCH_RECORD_URL, else the broker's db (one client per process)."""
    global _records, _records_pid
    if _records is None or _records_pid != os.getpid():
        _records = redis.Redis.from_url(os.environ.get("SMQ_BENCH_RECORD_URL") or app.conf.broker_url)
        _records_pid = os.getpid()
    return _records


@app.task(name=LATENCY_TASK, ignore_result=True)
def latency(key: str, sent: float) -> None:
    """Record when this task started, beside when it was sent (both wall clock, same host)."""
    started = time.time()
    _record_client().rpush(key, f"{sent!r} {started!r}")
