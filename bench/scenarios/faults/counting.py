"""How the soak counts: plain SQL on the fault's database (a PostgreSQL stopped meanwhile answers None),
and the calls log the Task handler appends to, read for completed Tasks that ran twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scenarios.faults.catalogue import MACHINE, TERMINAL


class Reads:
    """Plain SQL on the fault's database (a PostgreSQL stopped meanwhile answers None)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine

        self.engine = create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=0)

    def rows(self, sql: str, **params: Any) -> list[Any] | None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as connection:
                return list(connection.execute(text(sql), params))
        except SQLAlchemyError:
            return None

    def statuses(self) -> dict[str, int] | None:
        found = self.rows(
            "SELECT status, count(*) FROM smq_executions WHERE state_machine_id = :m GROUP BY status",
            m=MACHINE,
        )
        return None if found is None else {status: int(count) for status, count in found}

    def finished(self) -> int | None:
        statuses = self.statuses()
        return None if statuses is None else sum(statuses.get(status, 0) for status in TERMINAL)

    def claimed(self) -> int | None:
        found = self.rows("SELECT count(*) FROM smq_enqueued WHERE state_machine_id = :m", m=MACHINE)
        return None if found is None else int(found[0][0])

    def close(self) -> None:
        self.engine.dispose()


def completed_repeats(calls_log: Path) -> tuple[int, int]:
    """(completed Tasks run again, interrupted calls run again), per (execution, state), from the log.

    The log is in the order the lines were written (O_APPEND). A (execution, state) whose call logged
    ``end`` and that logged a ``start`` after it ran a completed Task twice; one whose call logged only
    ``start`` (cut by a SIGKILL) before another call is an interrupted call run again."""
    ended: set[tuple[str, str]] = set()
    open_calls: dict[tuple[str, str], set[str]] = {}
    repeated: set[tuple[str, str]] = set()
    interrupted: set[tuple[str, str]] = set()
    try:
        lines = calls_log.read_text().splitlines()
    except FileNotFoundError:
        return 0, 0
    for line in lines:
        fields = line.split()
        if len(fields) != 5:
            continue
        kind, execution, state, call, _pid = fields
        key = (execution, state)
        if kind == "start":
            if key in ended:
                repeated.add(key)
            elif open_calls.get(key):
                interrupted.add(key)
            open_calls.setdefault(key, set()).add(call)
        elif kind == "end":
            open_calls.get(key, set()).discard(call)
            ended.add(key)
    return len(repeated), len(interrupted)
