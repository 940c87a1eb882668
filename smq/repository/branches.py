"""Branch rows: the per-iteration progress of a parked fan-out in rows mode (smq.engine.branch_rows).

One row per branch of the execution's parked top-level Parallel or Map: WAITING with its cursor,
READY with the answer that came for it (until a run applies it), SUCCEEDED with its output, FAILED
(tolerated by a Map). They are written with the checkpoint that parks the state (its `changes`), in
the same transaction, and dropped by the first checkpoint that no longer keeps them; the answer path
(smq.repository.waits) marks one READY. Deleted with their execution (retention).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, insert, select, update

from smq.engine import branch_rows
from smq.engine.cursor import Step, deliver_at, fanout_pending
from smq.repository.tables import BRANCHES, WAITS

WAITING = "WAITING"
READY = "READY"
UNDELIVERED = "UNDELIVERED"  # a wait's status: its answer reached no waiting branch
# Where a rows-mode checkpoint's inputs are (`pending["inputs"]`): the execution's input column, or
# (the parked state's own input, when it is another) the row INPUT_ROW.
INPUTS = "inputs"
EXECUTION_INPUT = "execution"
INPUT_ROW_KIND = "INPUT"
INPUT_ROW = -1
TIMEOUTS = frozenset({"timeout", "heartbeat_timeout"})


def _row(execution_id: str, index: str, job: dict[str, Any], now: datetime) -> dict[str, Any]:
    status = str(job.get("status"))
    return {
        "execution_id": execution_id,
        "idx": int(index),
        "status": status,
        "cursor": job.get("cursor") if status == WAITING else None,
        "delivery": None,
        "output": job.get("output"),
        "error": job.get("error"),
        "cause": job.get("cause"),
        "updated_at": now,
    }


def _job(row: Any) -> dict[str, Any]:
    if row.status in (WAITING, READY):
        return {"status": WAITING, "cursor": row.cursor}
    if row.status == "SUCCEEDED":
        return {"status": row.status, "output": row.output}
    return {"status": row.status, "error": row.error, "cause": row.cause}


def step_branch_writes(step: Step) -> tuple[Step, Any]:
    """What a checkpoint of `step` does to branch rows: (the step as stored, a function of the
    transaction's connection, or None). A rows-mode park writes its `changes` and is stored without
    them; any other fan-out park drops the rows (its jobs are in the cursor)."""
    cursor = step.cursor
    fanout = fanout_pending(cursor.pending) if cursor is not None else None
    if cursor is None or fanout is None:
        return step, None
    execution_id = cursor.execution.id
    if not branch_rows.just_parked(fanout):
        return step, lambda connection: drop(connection, execution_id)
    changes: dict[str, dict[str, Any]] = fanout.get(branch_rows.CHANGES) or {}
    fresh = bool(fanout.get(branch_rows.FRESH))
    # The state's input and the execution's are kept out of the checkpoint: an answer does not read
    # and rewrite them (a Map's items are as large as the Map). The execution's input is its `input`
    # column already; the state's, when it is another, is a row of its own (`INPUT_ROW`).
    execution = cursor.execution
    same = cursor.input is execution.input or (fresh and cursor.input == execution.input)
    aside = None if same else cursor.input
    kept = Step(
        step.entries,
        cursor=cursor.moved(
            input=None,
            execution=replace(execution, input=None),
            pending={**branch_rows.stored(fanout), INPUTS: EXECUTION_INPUT if same else INPUT_ROW_KIND},
        ),
        status=step.status,
        output=step.output,
        error=step.error,
        cause=step.cause,
        failed_at=step.failed_at,
    )

    def writes(connection: Connection) -> None:
        write(connection, execution_id, changes, fresh)
        if fresh and not same:
            connection.execute(
                insert(BRANCHES),
                {
                    "execution_id": execution_id,
                    "idx": INPUT_ROW,
                    "status": INPUT_ROW_KIND,
                    "output": aside,
                    "updated_at": datetime.now(UTC),
                },
            )

    return kept, writes


def restore_inputs(engine: Engine, cursor: dict[str, Any], execution_input: Any) -> dict[str, Any]:
    """A checkpointed cursor (JSON) with the inputs a rows-mode park kept out of it put back: the
    execution's (`execution_input`, its record's) and the parked state's."""
    pending = cursor.get("pending")
    where = pending.get(INPUTS) if isinstance(pending, dict) else None
    if where is None:
        return cursor
    state_input = execution_input
    if where == INPUT_ROW_KIND:
        with engine.connect() as connection:
            state_input = connection.execute(
                select(BRANCHES.c.output).where(
                    BRANCHES.c.execution_id == cursor["execution"]["id"], BRANCHES.c.idx == INPUT_ROW
                )
            ).scalar()
    assert isinstance(pending, dict)
    kept = {key: value for key, value in pending.items() if key != INPUTS}
    execution = {**cursor["execution"], "input": execution_input}
    return {**cursor, "input": state_input, "execution": execution, "pending": kept}


def write(connection: Connection, execution_id: str, changes: dict[str, dict[str, Any]], fresh: bool) -> None:
    """Write `changes` (index -> job) into the execution's rows; `fresh`: they replace every row."""
    now = datetime.now(UTC)
    rows = [_row(execution_id, index, job, now) for index, job in changes.items()]
    if fresh:
        drop(connection, execution_id)
    elif rows:
        connection.execute(
            delete(BRANCHES).where(
                BRANCHES.c.execution_id == execution_id, BRANCHES.c.idx.in_([row["idx"] for row in rows])
            )
        )
    if rows:
        connection.execute(insert(BRANCHES), rows)


def ready_exists(connection: Connection, execution_id: str) -> bool:
    return bool(
        connection.execute(
            select(exists().where(BRANCHES.c.execution_id == execution_id, BRANCHES.c.status == READY))
        ).scalar()
    )


def ready_rows(connection: Connection, execution_id: str) -> list[Any]:
    return list(
        connection.execute(
            select(BRANCHES.c.idx, BRANCHES.c.delivery).where(
                BRANCHES.c.execution_id == execution_id, BRANCHES.c.status == READY
            )
        )
    )


def branch_row(connection: Connection, execution_id: str, path: str | None) -> Any:
    """The row of the branch at `path` (a top-level index), or None (not in rows mode)."""
    if path is None or not path.isdigit():
        return None
    return connection.execute(
        select(BRANCHES.c.idx, BRANCHES.c.status, BRANCHES.c.cursor).where(
            BRANCHES.c.execution_id == execution_id, BRANCHES.c.idx == int(path)
        )
    ).first()


def mark_ready(
    connection: Connection, execution_id: str, index: int, wait_id: str, delivery: dict[str, Any]
) -> bool:
    """The branch's answer has come (resolving `wait_id`): READY with it (False if it no longer waits)."""
    return bool(
        connection.execute(
            update(BRANCHES)
            .where(
                BRANCHES.c.execution_id == execution_id, BRANCHES.c.idx == index, BRANCHES.c.status == WAITING
            )
            .values(
                status=READY, delivery={"wait": wait_id, "answer": delivery}, updated_at=datetime.now(UTC)
            )
        ).rowcount
    )


def mark_undelivered(
    connection: Connection, wait_ids: list[str], reason: str, answer: dict[str, Any] | None
) -> None:
    """Answers that reached no waiting branch: their waits UNDELIVERED, with why and the answer (kept
    on the row: `answer`, or the one held there)."""
    if not wait_ids:
        return
    values: dict[str, Any] = {"status": UNDELIVERED, "resolution": reason, "resolved_at": datetime.now(UTC)}
    if answer is not None:
        values["delivery"] = answer
    connection.execute(update(WAITS).where(WAITS.c.id.in_(wait_ids)).values(**values))


def drop(connection: Connection, execution_id: str, applied: Collection[int] = ()) -> int:
    """Delete the execution's branch rows; answers READY in them and never applied (not in `applied`,
    those the run that leaves rows mode ran with) are recorded UNDELIVERED on their waits (their
    Parallel or Map ended, or went on, without them)."""
    for row in ready_rows(connection, execution_id):
        if row.idx in applied:
            continue
        held = row.delivery or {}
        if (held.get("answer") or {}).get("kind") in TIMEOUTS:
            continue  # a timeout is no one's answer: nothing was lost
        if held.get("wait"):
            mark_undelivered(connection, [held["wait"]], "branch ended", held.get("answer"))
    return int(connection.execute(delete(BRANCHES).where(BRANCHES.c.execution_id == execution_id)).rowcount)


class ExecutionBranches:
    """One execution's branch rows, as the engine reads them (`smq.engine.branch_rows.BranchRows`)."""

    def __init__(self, engine: Engine, execution_id: str) -> None:
        self.engine = engine
        self.execution_id = execution_id
        self.applied_indices: set[int] = set()  # READY rows this run applied (see `drop`)

    def applied(self, indices: list[int]) -> None:
        self.applied_indices.update(indices)

    def ready(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(BRANCHES.c.idx, BRANCHES.c.cursor, BRANCHES.c.delivery).where(
                    BRANCHES.c.execution_id == self.execution_id, BRANCHES.c.status == READY
                )
            ).all()
        for row in rows:
            answer = (row.delivery or {}).get("answer")
            cursor = deliver_at(row.cursor, "", answer) if answer else None
            found[str(row.idx)] = {"status": WAITING, "cursor": cursor or row.cursor}
        return found

    def jobs(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(BRANCHES).where(BRANCHES.c.execution_id == self.execution_id, BRANCHES.c.idx >= 0)
            )
            return {str(row.idx): _job(row) for row in rows}
