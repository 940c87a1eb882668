"""Parts 1, 2 and 2b of bench/distributed.py: the throughput pair, smq against bare Celery.

Each round stages N messages, releases them into the workers' db at once and times the backlog
draining, with the CPU it cost. Part 1 (the baseline) is N bare Celery no-op tasks, first to last
completion; part 2 is N pass3 executions run by ``execute_state_machine``, first start to last stop;
part 2b (context) is N tasks that each make one PostgreSQL INSERT, the most a design that writes
once per task could reach against the no-op. Every round is verified before its figure counts."""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from harness.database import commit_latency_ms, writes_per_execution
from harness.progress import load1, log
from harness.queues import QUEUE, leftover_messages
from sqlalchemy import text

from scenarios.distributed.profile import PySpy
from scenarios.distributed.results import Results, Throughput
from scenarios.distributed.rig import (
    CHUNK_SIZE,
    INSERT_TASK,
    NOOP_TASK,
    PASS3_FILE,
    PASS3_INPUT,
    PASS3_OUTPUT,
    PASS3_STATES,
    Rig,
    finished,
    noop_counter,
    release,
    smq_machine,
    wait_for,
)


def run_bare(number: int, count: int, rig: Rig) -> Throughput:
    """Part 1, round `number`: N no-op tasks staged, released at once, first to last completion."""
    result = Throughput("bare Celery no-op", count, rig.workers.count, number, load1=load1())
    key = f"bare:{uuid.uuid4().hex}"
    return run_counted(result, key, lambda _i: (NOOP_TASK, (key, count)), rig)


def run_insert(number: int, count: int, rig: Rig) -> Throughput:
    """Part 2b, round `number` (context): N tasks that each INSERT one row into PostgreSQL, then count."""
    result = Throughput("Celery + one PostgreSQL INSERT", count, rig.workers.count, number, load1=load1())
    key = f"insert{number}x{uuid.uuid4().hex[:8]}"
    result = run_counted(
        result, key, lambda i: (INSERT_TASK, (key, count, f"{key}-{i:07d}", PASS3_INPUT)), rig
    )
    with rig.repo.reader.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM smq_bench_rows WHERE id LIKE :prefix"), {"prefix": f"{key}-%"}
        ).scalar_one()
    if rows != count:
        result.ok = False
        result.detail = "; ".join(
            filter(None, [result.detail, f"{rows} rows in smq_bench_rows, expected {count}"])
        )
    return result


def run_counted(
    result: Throughput, key: str, message: Callable[[int], tuple[str, tuple[Any, ...]]], rig: Rig
) -> Throughput:
    """A round of N tasks (`message(i)` = task name and args of the i-th) counted on Redis counter
    `key`: staged, released at once, timed from the first completion to the last."""
    count = result.count
    start = time.perf_counter()
    for index in range(count):
        name, args = message(index)
        rig.staging_app.send_task(name, args=args, queue=QUEUE)
    result.publish_seconds = time.perf_counter() - start
    log(f"{result.what}: {count:,} tasks staged in {result.publish_seconds:.1f}s; releasing")
    meter = rig.workers.meter(rig.service_pids)
    meter.start()
    release(rig.staging, rig.db, count)
    wait_for(lambda: noop_counter(rig.worker_redis, key), count, rig.workers, result.what, 0.05)
    result.cpu = meter.stop()
    time.sleep(0.5)  # anything beyond N (a duplicate delivery) would show up now
    done = noop_counter(rig.worker_redis, key)
    first, last = rig.worker_redis.get(f"{key}:first"), rig.worker_redis.get(f"{key}:last")
    problems = []
    if done != count:
        problems.append(f"counter is {done}, expected {count}")
    if first is None or last is None:
        problems.append("first/last completion times missing")
    else:
        result.seconds = float(last) - float(first)
        result.intervals = count - 1
    problems += leftover_messages(rig.worker_redis)
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def run_smq(number: int, count: int, rig: Rig, py_spy: str | None = None) -> Throughput:
    """Part 2, round `number`: N pass3 executions of state machine smq_machine(number), enqueued with
    enqueue_many, released at once, first start to last stop."""
    result = Throughput("smq pass3 (PostgreSQL)", count, rig.workers.count, number, load1=load1())
    state_machine = smq_machine(number)
    from smq import StateMachine

    machine = StateMachine.from_definition(json.loads(PASS3_FILE.read_text()))
    result.writes_per_item = writes_per_execution(machine, PASS3_INPUT)
    result.commit_ms = commit_latency_ms(rig.repo, "postgresql")
    payloads = (
        {"state_machine_id": state_machine, "name": f"run-{i:07d}", "input": PASS3_INPUT}
        for i in range(count)
    )
    start = time.perf_counter()
    summary = rig.staging_client.enqueue_many(payloads, QUEUE, chunk_size=CHUNK_SIZE)
    result.publish_seconds = time.perf_counter() - start
    if summary.enqueued != count or summary.failed or summary.skipped:
        result.detail = f"enqueue_many: {summary.to_dict()}"
        return result
    log(f"smq: {count:,} executions enqueued in {result.publish_seconds:.1f}s; releasing")
    profiler = PySpy(py_spy, rig.workers.child_pids(), rig.workers.log_dir) if py_spy else None
    if profiler is not None:
        profiler.start()
    meter = rig.workers.meter(rig.service_pids)
    meter.start()
    release(rig.staging, rig.db, count)
    wait_for(lambda: finished(rig.repo, state_machine), count, rig.workers, "smq", 0.25)
    result.cpu = meter.stop()
    if profiler is not None:
        result.profile = profiler.stop(count)
    time.sleep(0.5)
    problems, span, mean_ms = verify_executions(rig.repo, state_machine, count)
    if span is not None:
        result.seconds, result.intervals = span, count
    result.mean_execution_ms = mean_ms
    problems += leftover_messages(rig.worker_redis)
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def verify_executions(repo: Any, machine: str, count: int) -> tuple[list[str], float | None, float | None]:
    """Exactly N executions of state machine `machine`, all SUCCEEDED with AWS's output, 3 history rows
    each, and no dead letter in the database; their span (first start to last stop) and mean duration."""
    problems: list[str] = []
    with repo.reader.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*) AS n, "
                "count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded, "
                "count(*) FILTER (WHERE output = CAST(:output AS jsonb)) AS right_output, "
                "count(*) FILTER (WHERE history_length = :states) AS right_length, "
                "min(start_time) AS first_start, max(stop_time) AS last_stop, "
                "avg(extract(epoch FROM stop_time - start_time)) * 1000 AS mean_ms "
                "FROM smq_executions WHERE state_machine_id = :sm"
            ),
            {"sm": machine, "output": json.dumps(PASS3_OUTPUT), "states": PASS3_STATES},
        ).one()
        wrong_history = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT e.id, count(h.id) AS rows FROM smq_executions e "
                "LEFT JOIN smq_history h ON h.execution_id = e.id WHERE e.state_machine_id = :sm "
                "GROUP BY e.id) per_execution WHERE rows <> :states"
            ),
            {"sm": machine, "states": PASS3_STATES},
        ).scalar_one()
        dead = connection.execute(text("SELECT count(*) FROM smq_dead_letters")).scalar_one()
    if row.n != count:
        problems.append(f"{row.n} executions, expected {count}")
    if row.succeeded != row.n:
        problems.append(f"{row.n - row.succeeded} not SUCCEEDED")
    if row.right_output != row.n:
        problems.append(f"{row.n - row.right_output} with an output other than {json.dumps(PASS3_OUTPUT)}")
    if row.right_length != row.n:
        problems.append(f"{row.n - row.right_length} with history_length != {PASS3_STATES}")
    if wrong_history:
        problems.append(f"{wrong_history} without exactly {PASS3_STATES} history rows")
    if dead:
        problems.append(f"{dead} dead letter(s)")
    span = None
    if row.first_start is not None and row.last_stop is not None:
        span = (row.last_stop - row.first_start).total_seconds()
    return problems, span, None if row.mean_ms is None else float(row.mean_ms)


def run_pair(number: int, args: argparse.Namespace, results: Results, rig: Rig) -> None:
    """Pair `number`: part 1's round, then part 2's, back to back, so both see the machine at about
    the same speed, then part 2b's (context, right after part 2's); py-spy (if asked) samples only the
    first pair's smq round."""
    log(f"pair {number}/{args.pairs}, part 1: bare Celery, {args.tasks:,} no-op tasks")
    bare = run_bare(number, args.tasks, rig)
    results.bare_rounds.append(bare)
    log(f"  {bare.rate:,.0f} tasks/s")
    log(f"pair {number}/{args.pairs}, part 2: smq, {args.tasks:,} pass3 executions ({smq_machine(number)})")
    smq = run_smq(number, args.tasks, rig, py_spy=args.py_spy if number == 1 else None)
    results.smq_rounds.append(smq)
    ratio = results.pair_ratio(bare, smq)
    log(f"  {smq.rate:,.0f} executions/s; smq / bare {'n/a' if ratio is None else f'{ratio:.3f}'}")
    log(f"pair {number}/{args.pairs}, part 2b (context): {args.tasks:,} tasks of one PostgreSQL INSERT each")
    insert = run_insert(number, args.tasks, rig)
    results.insert_rounds.append(insert)
    log(f"  {insert.rate:,.0f} tasks/s")
