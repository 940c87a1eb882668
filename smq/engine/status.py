"""Every status smq speaks of, in one place: what an execution is, and how one state's entry ended.

`StrEnum`s, so a status is still the plain string that the database stores, JSON carries and AWS
prints (`Status.SUCCEEDED == "SUCCEEDED"`), while code names it once and a typo fails at import.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """An execution's status. RUNNING: being run (or stopped by `stop_after`); WAITING: parked on a
    message, a callback or a durable timer (no worker holds it); PAUSED: a crashed execution held for
    an operator (recovery strategy "pause"). The other four are final."""

    RUNNING = "RUNNING"
    WAITING = "WAITING"
    PAUSED = "PAUSED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED})


class EntryStatus(StrEnum):
    """How one state's history entry ended. TIMED_OUT: a Message state whose timeout sent it to its
    TimeoutPath state; RETRIED and CAUGHT: a failure a Retry or a Catch handled."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRIED = "RETRIED"
    CAUGHT = "CAUGHT"
    TIMED_OUT = "TIMED_OUT"
