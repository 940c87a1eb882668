"""Logs that name the execution, from a real worker: with SMQ_LOG_FORMAT=json every line of its stderr
is one JSON object, every line smq logs about an execution carries its id, name, state machine, state,
attempt and queue, and each execution ends with one line (status, error, cause, duration); the default
text format says the same in brackets a person can read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smq import Repository
from smq.logs import CONTEXT_FIELDS, END_FIELDS
from tests.integration.distributed.harness import Db, Worker, run_smq, smq_env, wait_until

MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Next": "Call"},
        # InfrastructureError on the first `fail` calls: the task is retried, attempt 2 finishes it.
        "Call": {"Type": "Task", "Resource": "infra-first-calls", "ResultPath": "$.call", "Next": "Decide"},
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.reject", "BooleanEquals": True, "Next": "Reject"}],
            "Default": "Done",
        },
        "Reject": {"Type": "Fail", "Error": "Order.Rejected", "Cause": "rejected on purpose"},
        "Done": {"Type": "Succeed"},
    },
}


def _run_two(
    db: Db,
    repository: Repository,
    broker_url: str,
    start_worker: Callable[..., Worker],
    tmp: Path,
    **env: str,
) -> tuple[Worker, dict[str, Any]]:
    """ok-1 (on critical, one retried attempt, SUCCEEDED) and bad-1 (on default, FAILED), run by one
    worker; returns it once both end lines are in its log, and the executions' rows by name."""
    repository.put_definition("LOGS", MACHINE)
    environment = smq_env(db.url, broker_url, **env)
    worker = start_worker("w1", environment)
    calls = str(tmp / "calls")
    for name, queue, payload in (
        ("ok-1", "critical", {"calls": calls, "fail": 1, "reject": False}),
        ("bad-1", "default", {"calls": calls, "fail": 0, "reject": True}),
    ):
        run_smq(
            ["start", "LOGS", "--name", name, "--queue", queue, "--input", json.dumps(payload)], environment
        )
    wait_until(lambda: db.finished("LOGS") == 2, timeout=60, what="both executions", workers=[worker])
    wait_until(
        lambda: (
            worker.stderr().count("execution SUCCEEDED after") + worker.stderr().count("execution FAILED")
            >= 2
        ),
        timeout=15,
        what="both end lines",
        workers=[worker],
    )
    rows = db.rows("SELECT id, name, status, current_state, duration_ms FROM smq_executions")
    return worker, {row.name: row for row in rows}


def test_json_logs_parse_line_by_line_and_name_the_execution(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker, rows = _run_two(db, repository, broker_url, start_worker, tmp_path, SMQ_LOG_FORMAT="json")
    lines = [line for line in worker.stderr().splitlines() if line.strip()]
    # Before Celery sets logging up, Python may warn in plain text (running as root): every line from
    # the first log line on is one JSON object.
    first = next(number for number, line in enumerate(lines) if line.startswith("{"))
    assert first <= 10, lines[: first + 1]
    lines = lines[first:]
    entries = []
    for number, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"stderr line {number} is not JSON: {line!r}") from None
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    # Celery's own lines are JSON too: the worker's readiness, each task received.
    assert any(re.search(r"w1@\S+ ready\.", entry["message"]) for entry in entries)
    assert sum(" received" in entry["message"] for entry in entries) >= 3  # ok-1 twice, bad-1 once

    about = [entry for entry in entries if entry["logger"].startswith("smq") and "execution_id" in entry]
    for entry in about:
        missing = [key for key in CONTEXT_FIELDS if key != "state" and entry.get(key) is None]
        assert missing == [], f"{missing} missing from {entry}"
    ends = [entry for entry in about if "status" in entry]
    assert sorted(entry["execution_name"] for entry in ends) == ["bad-1", "ok-1"]  # one line each
    for entry in ends:
        assert set(CONTEXT_FIELDS + END_FIELDS) <= set(entry), entry
        row = rows[entry["execution_name"]]
        assert entry["execution_id"] == row.id and entry["state_machine_id"] == "LOGS"
        assert (entry["status"], entry["state"], entry["duration_ms"]) == (
            row.status,
            row.current_state,
            row.duration_ms,
        )
        assert entry["task_id"] and entry["level"] == "INFO"
    ok, bad = sorted(ends, key=lambda entry: entry["execution_name"] != "ok-1")
    assert (ok["status"], ok["attempt"], ok["queue"], ok["error"], ok["cause"]) == (
        "SUCCEEDED",
        2,
        "critical",
        None,
        None,
    )
    assert (bad["status"], bad["attempt"], bad["queue"]) == ("FAILED", 1, "default")
    assert (bad["error"], bad["cause"]) == ("Order.Rejected", "rejected on purpose")
    assert (
        bad["message"]
        == f"execution FAILED after {bad['duration_ms']} ms: Order.Rejected: rejected on purpose"
    )

    # The first attempt's retry line names the execution and the state it failed in.
    (retry,) = [
        entry for entry in entries if entry["logger"] == "smq.tasks" and "retrying in" in entry["message"]
    ]
    assert (retry["execution_id"], retry["execution_name"], retry["state"]) == (
        rows["ok-1"].id,
        "ok-1",
        "Call",
    )
    assert (retry["attempt"], retry["queue"], retry["level"]) == (1, "critical", "WARNING")


def test_text_logs_stay_readable_and_name_the_execution(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker, rows = _run_two(db, repository, broker_url, start_worker, tmp_path)
    stderr = worker.stderr()
    assert not any(line.startswith("{") for line in stderr.splitlines())
    ok, bad = rows["ok-1"], rows["bad-1"]
    for row, outcome, context in (
        (ok, "SUCCEEDED after {} ms", "state=Done attempt=2 state_attempt=1 queue=critical"),
        (
            bad,
            "FAILED after {} ms: Order.Rejected: rejected on purpose",
            "state=Reject attempt=1 state_attempt=1 queue=default",
        ),
    ):
        line = (
            rf"^\[[^]]+: INFO/ForkPoolWorker-\d+\] execution {re.escape(outcome.format(row.duration_ms))} "
            rf"\[LOGS/{row.name} {row.id} {context} task_id=[0-9a-f-]{{36}}\]$"
        )
        assert re.search(line, stderr, re.MULTILINE), f"no line like {line}:\n{stderr[-3000:]}"
    # Celery's own lines keep their look (and the harness's patterns still match them).
    assert len(worker.task_ids("received")) == 2 and stderr.count("] received") == 3  # ok-1's retry
