"""Rows mode of a parked fan-out: each waiting iteration's progress in a row of its own.

A top-level Parallel or Map whose every branch has started, and whose paused branches all wait for a
delivery (a Message state, a callback task: no timer, no nested fan-out), parks in rows mode: its
cursor's `pending` is only a summary, `{"kind": "fanout", "rows": true, "count": N, "waiting": W}`, and
each branch's job (`smq.engine.fanout`'s JOB: its cursor while it waits, its result once ended) lives in
a row the runtime's `BranchRows` reads. An answer marks its branch's row READY (with the delivery); a
run of the state drives only the READY branches and writes back only their rows, so an answer costs
the same at 10 and at 10,000 waiting iterations. The last branch to end gathers every row's result,
in order, once.

The step that parks carries the rows to write in `pending["changes"]` (`{"<index>": JOB}`; with
`"fresh": true`, every row, replacing any others): the checkpoint writes them with the cursor and
stores the summary without them. A summary with `changes` has just parked (nothing to run in this
process); one without, read back from a checkpoint, is run: the READY rows tell what goes on.

Anything else (a nested fan-out, a branch paused on a timer, branches not started yet because of
MaxConcurrency) keeps every job in the cursor, as before (`smq.engine.fanout`).
"""

from __future__ import annotations

from typing import Any, Protocol

from smq.engine.cursor import FANOUT, PARKED_KINDS, fanout_pending

ROWS = "rows"
CHANGES = "changes"
FRESH = "fresh"


class BranchRows(Protocol):
    """An execution's branch rows, as the engine reads them (the repository implements it)."""

    def ready(self) -> dict[str, dict[str, Any]]:
        """The branches whose answer has come: index -> job `{"status": "WAITING", "cursor": C}`,
        its cursor (without execution info) with the delivery set."""
        ...

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every branch's job by index, READY ones as WAITING without their delivery."""
        ...

    def applied(self, indices: list[int]) -> None:
        """These READY branches ran with their answers (which a row dropped unwritten must not report
        as undelivered)."""
        ...


def rows_summary(pending: Any, count: int | None = None) -> dict[str, Any] | None:
    """`pending` when it is a rows-mode fan-out summary (of `count` branches, when given), else None."""
    fanout = fanout_pending(pending)
    if fanout is None or not fanout.get(ROWS):
        return None
    if count is not None and fanout.get("count") != count:
        return None
    return fanout


def just_parked(pending: Any) -> bool:
    """A rows-mode summary written by the step that parked it (it still carries its `changes`)."""
    summary = rows_summary(pending)
    return summary is not None and CHANGES in summary


def stored(pending: dict[str, Any]) -> dict[str, Any]:
    """The summary as checkpointed: without the rows it writes."""
    return {key: value for key, value in pending.items() if key not in (CHANGES, FRESH)}


def waits_for_delivery(pending: Any, not_before: float | None) -> bool:
    """A parked job (its cursor's `pending` and `not_before`) that waits for a message or a token
    itself, with no timer and no fan-out of its own: what a branch row may hold."""
    return (
        not_before is None
        and isinstance(pending, dict)
        and pending.get("kind") in PARKED_KINDS
        and "delivery" not in pending
    )


def waits_directly(cursor: dict[str, Any] | None) -> bool:
    """`waits_for_delivery` of a parked job's cursor as JSON."""
    if not cursor:
        return False
    return waits_for_delivery(cursor.get("pending"), cursor.get("not_before"))


def summary(
    count: int, waiting: int, succeeded: int, changes: dict[str, dict[str, Any]], fresh: bool
) -> dict[str, Any]:
    """A rows-mode `pending` that parks the state with `changes` to write (the others ended FAILED,
    tolerated by a Map)."""
    pending: dict[str, Any] = {
        "kind": FANOUT,
        ROWS: True,
        "count": count,
        "waiting": waiting,
        "succeeded": succeeded,
        CHANGES: changes,
    }
    if fresh:
        pending[FRESH] = True
    return pending
