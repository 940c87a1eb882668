"""An execution a dead letter fails gets the same end line as every other execution, naming it: whether
the letter reaches the database at once or waits in the broker's spool until the database is back."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from smq import HandlerRegistry, Repository, StartRequest, start_execution
from smq.distributed.dead_letter_spool import SpooledDeadLetters, drain_spool, spool
from smq.repository.queue_records import DeadLetters

TWO_TASKS = {
    "StartAt": "First",
    "States": {
        "First": {"Type": "Task", "Resource": "noop", "Next": "Second"},
        "Second": {"Type": "Task", "Resource": "noop", "End": True},
    },
}


def _running(repository: Repository, name: str) -> str:
    """An execution left RUNNING at its second state (as a worker that keeps failing leaves it)."""
    registry = HandlerRegistry()
    registry.register("noop", lambda payload, ctx: {})
    record = start_execution(
        repository, StartRequest("dl-lines", {}, name=name), handlers=registry, stop_after=1, lease_seconds=0
    )
    assert record.status == "RUNNING"
    return record.execution_id


def _letter(task_id: str, name: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "task_name": "execute_state_machine",
        "queue": "default",
        "reason": "retries_exhausted",
        "payload": {"state_machine_id": "dl-lines", "name": name},
        "error": "OperationalError: the database went away",
        "traceback": None,
        "attempts": 4,
    }


def _end_lines(caplog: pytest.LogCaptureFixture, execution_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "smq.execution" and getattr(r, "execution_id", None) == execution_id
    ]


def test_dead_lettered_executions_log_their_end(
    repository: Repository, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    repository.put_definition("dl-lines", TWO_TASKS)
    caplog.set_level(logging.INFO, logger="smq.execution")
    store = DeadLetters(repository.engine)

    direct = _running(repository, "direct")
    SpooledDeadLetters(store, broker_url).record(**_letter("t-direct", "direct"))
    (line,) = _end_lines(caplog, direct)
    assert line.levelno == logging.WARNING
    assert (line.status, line.error, line.execution_name, line.state) == (  # type: ignore[attr-defined]
        "FAILED",
        "smq.DeadLettered",
        "direct",
        "Second",
    )
    assert "execution FAILED" in line.getMessage() and "retries_exhausted" in line.getMessage()

    spooled = _running(repository, "spooled")
    spool(broker_url, _letter("t-spooled", "spooled"))
    assert _end_lines(caplog, spooled) == []  # spooled: the execution has not failed yet
    assert drain_spool(store, broker_url) == 1
    (later,) = _end_lines(caplog, spooled)
    assert (later.status, later.execution_name) == ("FAILED", "spooled")  # type: ignore[attr-defined]
    assert repository.get_execution(spooled).status == "FAILED"
