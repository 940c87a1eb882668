"""SQL the benchmarks run on smq's tables beside the repository: bulk loads, the commit latency
floor, the backends connected to a bench database, and the writes one execution makes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

# smq_executions' columns, in the order the bulk loaders write them.
EXECUTION_COLUMNS = (
    "id", "name", "state_machine_id", "version", "status", "input", "output", "error", "cause",
    "current_state", "cursor", "history_length", "start_time", "stop_time", "duration_ms", "updated_at",
    "source_execution_id", "source_state_name", "transformer",
)  # fmt: skip


def postgres_pids(repo: Any) -> Callable[[], list[int]]:
    """A function listing the PostgreSQL backends connected to `repo`'s database (for CpuMeter)."""
    from sqlalchemy import text

    def pids() -> list[int]:
        with repo.reader.connect() as connection:
            return list(
                connection.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
                ).scalars()
            )

    return pids


def commit_latency_ms(repo: Any, backend: str = "postgresql", commits: int = 200) -> float:
    """Mean time of a one-row INSERT committed on its own (PostgreSQL: autocommit; SQLite: BEGIN
    IMMEDIATE ... COMMIT): the floor under every write transaction."""
    raw = repo.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        connection.execute("CREATE TABLE smq_bench_commit_probe (x INTEGER)")
        if backend == "postgresql":
            connection.commit()
            connection.autocommit = True
        begin, end = ("BEGIN IMMEDIATE", "COMMIT") if backend == "sqlite" else ("", "")
        placeholder = "?" if backend == "sqlite" else "%s"
        start = time.perf_counter()
        for value in range(commits):
            if begin:
                connection.execute(begin)
            connection.execute(f"INSERT INTO smq_bench_commit_probe VALUES ({placeholder})", (value,))
            if end:
                connection.execute(end)
        elapsed = time.perf_counter() - start
        connection.execute("DROP TABLE smq_bench_commit_probe")
        if backend == "postgresql":
            connection.autocommit = False
        return elapsed / commits * 1000
    finally:
        raw.close()


def writes_per_execution(machine: Any, execution_input: Any, checkpoints: str | None = None) -> int:
    """Write transactions one persisted execution makes (`machine` is a compiled smq StateMachine).

    every-state: the RUNNING insert, then one checkpoint per step. boundaries (the default): a step
    that smq defers (side-effect free, leading into another) shares the next write, and an execution
    that starts side-effect free is inserted by its first write."""
    from smq.execution.checkpoints import EVERY_STATE, deferrable, starts_side_effect_free

    mode = checkpoints or os.environ.get("SMQ_CHECKPOINTS") or "boundaries"
    steps: list[Any] = []
    machine.run(execution_input, on_step=steps.append)
    if mode == EVERY_STATE:
        return 1 + len(steps)
    states = machine.machine.states
    insert = 0 if starts_side_effect_free(states, machine.machine.start_at) else 1
    return insert + sum(1 for step in steps if not deferrable(step, states))


def copy_executions(repo: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """Bulk-load rows (in EXECUTION_COLUMNS order) into PostgreSQL's smq_executions: COPY ... FROM
    STDIN on the raw psycopg connection, then ANALYZE."""
    raw = repo.engine.raw_connection()
    try:
        connection: Any = raw.driver_connection
        with connection.cursor() as cursor:
            with cursor.copy(f"COPY smq_executions ({', '.join(EXECUTION_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            connection.commit()
            cursor.execute("ANALYZE smq_executions")
            connection.commit()
    finally:
        raw.close()
