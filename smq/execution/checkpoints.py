"""When a step is written: on its own, or together with the steps after it.

A checkpoint is a durability boundary, and only side effects need one. A step that ran only Pass or
Choice states and leads straight into another such state (or into Succeed or Fail) changes nothing
outside the execution, so it waits and is written in the same transaction as the next step: the history
is the same row for row (each row keeps its own times), and a crash in between re-runs those states,
whose results nobody has seen yet. A step that ran a Task, a Map, a Parallel, a Wait or a Message state,
or that leads into one, is written before the next state starts, so no side effect is ever repeated or
lost because a checkpoint was deferred. An execution whose first state is side-effect free is inserted
by its first write, with its first steps (``start_execution``).

``SMQ_CHECKPOINTS=every-state`` writes every step on its own (one transaction per state), for those
who want each state visible the moment it ends; ``boundaries`` is the default.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import DataError

from smq.engine.cursor import Cursor, Step
from smq.engine.model import State
from smq.repository.database import database_unavailable
from smq.repository.repository import CheckpointConflict, ExecutionRecord, Repository

log = logging.getLogger("smq.checkpoints")

BOUNDARIES = "boundaries"
EVERY_STATE = "every-state"
CHECKPOINT_MODES = (BOUNDARIES, EVERY_STATE)

SIDE_EFFECT_FREE = frozenset({"Pass", "Choice"})
TERMINAL = frozenset({"Succeed", "Fail"})


def deferrable(step: Step, states: Mapping[str, State]) -> bool:
    """May `step` wait for the next write? Only if it ran nothing but top-level Pass/Choice states and
    leads, with no pause, into another side-effect-free state."""
    following = step.cursor
    if following is None or following.parked or following.not_before is not None or not step.entries:
        return False
    if any(entry.scope or entry.state_type not in SIDE_EFFECT_FREE for entry in step.entries):
        return False
    state = states.get(following.state)
    return state is not None and (state.type in SIDE_EFFECT_FREE or state.type in TERMINAL)


def starts_side_effect_free(states: Mapping[str, State], state_name: str) -> bool:
    """Can an execution starting at `state_name` be inserted by its first write (no effect before it)?"""
    state = states.get(state_name)
    return state is not None and state.type in SIDE_EFFECT_FREE


def merged(steps: list[Step]) -> Step:
    """One step with every entry of `steps`, ending where the last one ends."""
    if len(steps) == 1:
        return steps[0]
    return replace(steps[-1], entries=[entry for step in steps for entry in step.entries])


class Superseded(Exception):
    """The deferred insert found the execution's name taken: another delivery created it first."""

    def __init__(self, existing: ExecutionRecord):
        super().__init__("the execution was created by another writer")
        self.existing = existing


class Unstorable(Exception):
    """A step was refused by the database and the execution has been failed instead."""


@dataclass
class CheckpointWriter:
    """The `on_step` hook of a persisted run: writes steps (now or at the next boundary) and keeps
    the history length this writer has seen, which every conditional write is checked against."""

    repository: Repository
    record: ExecutionRecord
    states: Mapping[str, State]
    start_time: float
    coalesce: bool = True
    insert_first: bool = False  # the execution is not written yet: the first write inserts it
    latest_guard: bool = False  # for that insert: only if record.version is still the latest
    lease_seconds: float = 0  # for that insert: an existing execution nobody holds is taken over
    # Seconds to keep retrying a write the database could not take (down, restarting) before giving up.
    # The step's results (a Task's output) live only here meanwhile: giving up means running it again.
    outage_budget: float = 0
    # Told of the record this writer's own first write inserted (`insert_first`): the execution exists now.
    on_insert: Callable[[ExecutionRecord], None] | None = None

    def __post_init__(self) -> None:
        self.seen = self.record.history_length
        self.written: dict[str, Any] = {}  # the columns written so far, applied to `record` at the end
        self.pending: list[Step] = []
        self.ended = False  # a written step ended the execution

    def __call__(self, step: Step) -> None:
        if self.coalesce and deferrable(step, self.states):
            self.pending.append(step)
            return
        self.write(step)

    def flush(self) -> None:
        """Write the steps still waiting (a run that stopped between two side-effect-free states)."""
        if self.pending:
            last = self.pending.pop()
            self.write(last)

    def write(self, step: Step) -> None:
        ended_in = None  # an end written with the steps before it: where a step-by-step run stood
        if self.pending:
            if step.cursor is None:
                ended_in = self.pending[-1].cursor
            step = merged([*self.pending, step])
            self.pending.clear()
        try:
            values = self._store_through_outages(step, ended_in)
        except DataError as exc:
            # The database refused this step's data (e.g. a NUL character in JSONB): fail the execution
            # with a clear cause rather than leave it RUNNING on a step that can never be recorded.
            cause = f"the step could not be stored: {str(exc.orig).splitlines()[0]}"
            refused = Step([], status="FAILED", error="States.Runtime", cause=cause)
            self.written.update(self._store(refused, None))  # stays at the last state written
            raise Unstorable from None
        self.written.update(values)
        self.seen += len(step.entries)
        self.ended = step.cursor is None

    def _store_through_outages(self, step: Step, ended_in: Cursor | None) -> dict[str, Any]:
        """`_store`, retried with backoff while the database is unreachable, within the outage budget.

        The lease keeper goes on renewing in the background meanwhile, so the recovery scanner leaves
        the execution to this process. A commit cut off mid-way may have landed: after a failed attempt,
        a conflict is checked against what is stored before it is believed."""
        deadline = time.monotonic() + self.outage_budget
        delay, failures = 0.25, 0
        while True:
            try:
                return self._store(step, ended_in)
            except CheckpointConflict:
                if failures and self._landed(step):
                    return {}
                raise
            except Exception as exc:
                if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                    raise
                failures += 1
                log.warning(
                    "execution %s: checkpoint not written (%s); retrying in %.2fs, keeping its results "
                    "(outage budget %.0fs)",
                    self.record.execution_id,
                    str(exc).splitlines()[0][:200],
                    delay,
                    self.outage_budget,
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _landed(self, step: Step) -> bool:
        """Did an attempt whose outcome was lost (the connection dropped during COMMIT) write `step`?
        Then the stored record is this writer's own, one step further on."""
        stored = self.repository.get_execution(self.record.execution_id)
        if stored.history_length != self.seen + len(step.entries):
            return False
        if not step.entries and (step.cursor is not None or stored.status != step.status):
            return False  # a step without history rows is recognised by the end it writes
        self.record, self.written = stored, {}
        log.info("execution %s: the checkpoint had landed before the connection dropped", stored.execution_id)
        return True

    def _store(self, step: Step, ended_in: Cursor | None) -> dict[str, Any]:
        if not self.insert_first:
            return self.repository.checkpoint(
                self.record.execution_id, self.seen, step, start_time=self.start_time, ended_in=ended_in
            )
        record, created = self.repository.insert_execution(
            self.record,
            latest_guard=self.latest_guard,
            first_step=step,
            ended_in=ended_in,
            lease_seconds=self.lease_seconds,
        )
        if not created:
            if record.execution_id == self.record.execution_id:
                # This writer's own insert, committed by an attempt whose answer was lost.
                self._inserted(record)
                return {}
            raise Superseded(record)
        self._inserted(record)  # as inserted: nothing more to apply
        return {}

    def _inserted(self, record: ExecutionRecord) -> None:
        self.insert_first = False
        self.record = record
        if self.on_insert is not None:
            self.on_insert(record)

    def result(self) -> ExecutionRecord:
        """The record as written."""
        return replace(self.record, **self.written) if self.written else self.record
