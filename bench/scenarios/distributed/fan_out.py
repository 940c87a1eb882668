"""Part 3 of bench/distributed.py: leader publishing, ``fan_out`` against a plain ``send_task`` loop.

M SUCCEEDED sources are COPY-loaded; ``smq.distributed.leader.fan_out`` publishes one chained
execution per source (keyset pages, ledger claims, ``group()`` chunks), timed from the call to its
return. The baseline publishes the same payloads from one producer with ``app.send_task`` in a loop.
Each side must leave exactly M messages in the staging queue; the best of ``--rounds`` is kept."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from harness.database import copy_executions
from harness.progress import load1, log
from harness.queues import QUEUE, delete_queues, queue_length
from sqlalchemy import text

from scenarios.distributed.results import Publish, Results
from scenarios.distributed.rig import CHAIN_TARGET, CHUNK_SIZE, PASS3_STATES, SMQ_TASK, SOURCE_MACHINE


def source_rows(machine: str, count: int) -> Iterator[tuple[Any, ...]]:
    """SUCCEEDED executions in EXECUTION_COLUMNS order, one start time each, small output."""
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(count):
        start = origin + timedelta(milliseconds=index)
        stop = start + timedelta(milliseconds=5)
        yield (
            str(uuid.uuid4()), f"src-{index:07d}", machine, 1, "SUCCEEDED",
            json.dumps({"name": f"src-{index}"}), json.dumps({"name": f"src-{index}", "step": 1}),
            None, None, None, None, PASS3_STATES, start, stop, 5, stop, None, None, None,
        )  # fmt: skip


def load_sources(repo: Any, machine: str, count: int) -> float:
    """COPY ... FROM STDIN on the raw psycopg connection, then ANALYZE (as bench/persistence.py does)."""
    start = time.perf_counter()
    copy_executions(repo, source_rows(machine, count))
    return time.perf_counter() - start


def clear_ledger(repo: Any, machine: str) -> None:
    with repo.engine.begin() as connection:
        connection.execute(text("DELETE FROM smq_enqueued WHERE state_machine_id = :sm"), {"sm": machine})


def run_leader(repo: Any, client: Any, staging: redis.Redis, count: int) -> Publish:
    """fan_out over the M sources, timed from the call to its return; then LLEN must be M."""
    from smq import ExecutionFilter
    from smq.distributed.leader import fan_out

    result = Publish("leader fan_out", count, load1=load1())
    start = time.perf_counter()
    summary = fan_out(
        client, CHAIN_TARGET, ExecutionFilter(state_machine_id=SOURCE_MACHINE), chunk_size=CHUNK_SIZE
    )
    result.seconds = time.perf_counter() - start
    result.queue_length = queue_length(staging)
    problems = []
    if summary.enqueued != count or summary.skipped or summary.failed:
        problems.append(f"fan_out returned {summary.to_dict()}")
    if result.queue_length != count:
        problems.append(f"queue holds {result.queue_length}, expected {count}")
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def leader_payloads(repo: Any) -> list[dict[str, Any]]:
    """Exactly what fan_out publishes per source (its payload after QueueClient's validation)."""
    from smq import ExecutionFilter
    from smq.execution.batch import chained_name

    return [
        {
            "state_machine_id": CHAIN_TARGET,
            "name": chained_name("", source),
            "source_execution_id": source.execution_id,
            "options": {"queue": QUEUE},
        }
        for source in repo.stream_execution_keys(
            ExecutionFilter(state_machine_id=SOURCE_MACHINE), page_size=CHUNK_SIZE
        )
    ]


def run_plain(app: Any, staging: redis.Redis, payloads: list[dict[str, Any]]) -> Publish:
    """One producer, one app.send_task per payload; then LLEN must be M."""
    result = Publish("plain send_task loop", len(payloads), load1=load1())
    send = app.send_task
    start = time.perf_counter()
    for payload in payloads:
        send(SMQ_TASK, args=(payload,), queue=QUEUE)
    result.seconds = time.perf_counter() - start
    result.queue_length = queue_length(staging)
    result.ok = result.queue_length == len(payloads)
    result.detail = "" if result.ok else f"queue holds {result.queue_length}, expected {len(payloads)}"
    return result


def run_publishing(
    repo: Any, client: Any, app: Any, staging: redis.Redis, count: int, rounds: int, results: Results
) -> None:
    log(f"publish: loading {count:,} sources")
    seconds = load_sources(repo, SOURCE_MACHINE, count)
    log(f"publish: loaded in {seconds:.1f}s")
    payloads = leader_payloads(repo)
    if len(payloads) != count:
        raise RuntimeError(f"{len(payloads)} sources streamed back, expected {count}")
    for _ in range(200):  # warm the producer's connection and Celery's publish path, then discard
        app.send_task(SMQ_TASK, args=(payloads[0],), queue=QUEUE)
    delete_queues(staging)
    for round_number in range(1, rounds + 1):
        clear_ledger(repo, CHAIN_TARGET)
        log(f"publish round {round_number}/{rounds}: leader fan_out of {count:,}")
        results.leader.append(run_leader(repo, client, staging, count))
        log(f"  {results.leader[-1].rate:,.0f} messages/s")
        delete_queues(staging)
        log(f"publish round {round_number}/{rounds}: plain send_task loop of {count:,}")
        results.plain.append(run_plain(app, staging, payloads))
        log(f"  {results.plain[-1].rate:,.0f} messages/s")
        delete_queues(staging)
