"""Dead letters: what a worker gives up on lands in smq_dead_letters, and `smq dead` lists, shows,
retries and purges it. A malformed payload is rejected at once; an infrastructure error is retried
from the execution's last checkpoint until retries run out, then waits in the dead letters for
`smq dead retry`, which resumes the execution where it stopped.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smq import Repository
from smq.distributed.task_names import TASK_NAME
from tests.integration.distributed.harness import (
    Db,
    Worker,
    broker_backlog,
    client_app,
    smq_env,
    smq_here,
    smq_json,
    wait_until,
)

TASK = TASK_NAME
PASS = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": True}}}
FLAKY = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Task", "Resource": "count-calls", "ResultPath": "$.before", "Next": "Flaky"},
        "Flaky": {"Type": "Task", "Resource": "infra-while-flag", "ResultPath": "$.flaky", "Next": "After"},
        "After": {"Type": "Pass", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}

# Payloads the task cannot run, and the text their dead letter's error must contain (the field).
POISON: dict[str, tuple[Any, str]] = {
    "version": ({"state_machine_id": "PASS", "name": "p-version", "version": "two"}, "'version'"),
    "unknown": ({"state_machine_id": "PASS", "name": "p-unknown", "colour": "red"}, "'colour'"),
    "name": ({"state_machine_id": "PASS", "name": ""}, "'name'"),
    "machine": ({"state_machine_id": "bad id!", "name": "p-machine"}, "'state_machine_id'"),
    "queue": ({"state_machine_id": "PASS", "name": "p-queue", "options": {"queue": "urgent"}}, "'queue'"),
    "not_object": (["PASS", "p-list"], "JSON object"),
}


def _send_raw(broker_url: str, payloads: dict[str, Any], queue: str) -> dict[str, str]:
    """Publish payloads as they are, bypassing every client-side check; returns key -> task id."""
    app = client_app(broker_url)
    ids = {}
    try:
        for key, payload in payloads.items():
            ids[key] = str(uuid.uuid4())
            app.send_task(TASK, args=[payload], queue=queue, task_id=ids[key])
    finally:
        app.close()
    return ids


def _received(worker: Worker, task_id: str) -> int:
    return worker.stderr().count(f"{TASK}[{task_id}] received")


def _the_dead_letter(
    db: Db,
    worker: Worker,
    broker_url: str,
    machine: str,
    what: str,
    *,
    timeout: float = 30,
    settle: float = 0,
) -> Any:
    """Wait for a dead letter; after `settle` seconds (for a second report of the same failure to land
    on the same row), there must be exactly one: return it."""
    wait_until(
        lambda: len(db.dead_letters()) >= 1,
        timeout=timeout,
        what=what,
        workers=[worker],
        diagnose=lambda: db.describe(machine, broker_url) + "\n" + worker.tail(8),
    )
    time.sleep(settle)
    (letter,) = db.dead_letters()
    return letter


def test_poison_payloads_are_dead_at_once_and_smq_dead_lists_shows_purges(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    repository.put_definition("PASS", PASS)
    env = smq_env(db.url, broker_url)
    worker = start_worker("w1", env)
    poison = {key: payload for key, (payload, _) in POISON.items()}
    poison["missing_machine"] = {"state_machine_id": "NOPE", "name": "p-nope"}
    ids = _send_raw(broker_url, poison, "low")
    # A valid task behind them on the same queue (FIFO, one process): when it has run, they all have.
    marker = _send_raw(broker_url, {"marker": {"state_machine_id": "PASS", "name": "marker"}}, "low")
    wait_until(
        lambda: db.count("PASS", "SUCCEEDED") == 1 and len(db.dead_letters()) >= len(poison),
        timeout=30,
        what="the poison payloads and the marker to be processed",
        workers=[worker],
        diagnose=lambda: db.describe("PASS", broker_url),
    )
    time.sleep(1.5)  # retries back off 0.1-0.2 s: any retry of a poison task would have arrived by now
    letters = {row.task_id: row for row in db.dead_letters()}
    assert set(letters) == set(ids.values()), "exactly the poison tasks are dead"
    for key, (payload, field) in POISON.items():
        letter = letters[ids[key]]
        assert (letter.reason, letter.attempts, letter.queue, letter.task_name) == (
            "invalid_payload",
            1,
            "low",
            TASK,
        ), key
        assert field in letter.error, f"{key}: {letter.error!r} does not name {field}"
        assert letter.payload == payload, key
        assert _received(worker, ids[key]) == 1, f"{key} was delivered again"
    nope = letters[ids["missing_machine"]]
    assert (nope.reason, nope.attempts, nope.state_machine_id, nope.execution_name) == (
        "rejected",
        1,
        "NOPE",
        "p-nope",
    )
    assert "NOPE" in nope.error
    assert _received(worker, ids["missing_machine"]) == 1
    assert _received(worker, marker["marker"]) == 1
    assert db.rows("SELECT name FROM smq_executions") == [("marker",)]  # no poison created anything
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}

    # smq dead list / show / purge (database only) run in this process; stats and retry as commands.
    version_id = ids["version"]
    stats = smq_json(["stats"], env)
    assert {queue: counts["dead"] for queue, counts in stats["queues"].items()} == {
        "critical": 0,
        "default": 0,
        "low": len(poison),
    }
    assert {queue: counts["pending"] for queue, counts in stats["queues"].items()} == {
        "critical": 0,
        "default": 0,
        "low": 0,
    }
    assert stats["executions"] == {"SUCCEEDED": 1}
    everything = json.loads(smq_here(["dead", "list", "--oldest-first", "--json"], env).stdout)[
        "dead_letters"
    ]
    assert sorted(item["task_id"] for item in everything) == sorted(ids.values())
    assert all("traceback" not in item for item in everything)  # the list leaves tracebacks out
    assert [item["failed_at"] for item in everything] == sorted(item["failed_at"] for item in everything)
    low = json.loads(smq_here(["dead", "list", "--queue", "low", "--json"], env).stdout)["dead_letters"]
    assert len(low) == len(poison)
    assert [item["failed_at"] for item in low] == sorted((item["failed_at"] for item in low), reverse=True)
    assert json.loads(smq_here(["dead", "list", "--queue", "critical", "--json"], env).stdout) == {
        "dead_letters": [],
        "next_token": None,
    }
    table = smq_here(["dead", "list"], env).stdout
    assert table.count("invalid_payload") == len(POISON) and table.count("rejected") == 1
    detail = json.loads(smq_here(["dead", "show", version_id, "--json"], env).stdout)
    assert detail["task_id"] == version_id
    assert detail["reason"] == "invalid_payload" and detail["attempts"] == 1 and detail["queue"] == "low"
    assert detail["payload"] == POISON["version"][0]
    assert detail["state_machine_id"] == "PASS" and detail["execution_name"] == "p-version"
    assert "'version'" in detail["error"] and "traceback" in detail
    text = smq_here(["dead", "show", version_id], env).stdout
    assert f"task_id: {version_id}" in text and "reason: invalid_payload" in text
    (payload_line,) = [line for line in text.splitlines() if line.startswith("payload: ")]
    assert json.loads(payload_line.removeprefix("payload: ")) == POISON["version"][0]
    assert "no-such-task" in smq_here(["dead", "show", "no-such-task"], env, expect=3).stderr

    # A malformed payload cannot be retried: `smq dead retry` refuses it, names the field, keeps it.
    refused = smq_json(["dead", "retry", version_id], env, expect=1)
    assert refused["retried"] == [] and [item["task_id"] for item in refused["failed"]] == [version_id]
    assert "'version'" in refused["failed"][0]["error"]
    assert version_id in {row.task_id for row in db.dead_letters()}
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}

    # purge one by id, then an empty queue, then everything.
    assert json.loads(smq_here(["dead", "purge", version_id, "--json"], env).stdout) == {"deleted": 1}
    assert version_id in smq_here(["dead", "purge", version_id], env, expect=3).stderr
    purge_critical = ["dead", "purge", "--all", "--queue", "critical", "--yes", "--json"]
    assert json.loads(smq_here(purge_critical, env).stdout) == {"deleted": 0}
    assert "--all" in smq_here(["dead", "purge"], env, expect=2).stderr  # neither ids nor --all
    remaining = {row.task_id for row in db.dead_letters()}
    assert remaining == set(ids.values()) - {version_id}
    rest = smq_here(["dead", "purge", "--all", "--yes"], env)
    assert f"{len(remaining)} dead letter(s) deleted" in rest.stdout
    assert db.dead_letters() == []


def test_infrastructure_error_retries_then_dead_then_smq_dead_retry_resumes(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("FLAKY", FLAKY)
    env = smq_env(db.url, broker_url, SMQ_MAX_RETRIES="2")
    worker = start_worker("w1", env)
    flag = tmp_path / "outage.flag"
    flag.write_text("down")
    calls = tmp_path / "calls.txt"
    execution_input = {"flag": str(flag), "calls": str(calls)}
    sent = smq_json(
        [
            "start",
            "FLAKY",
            "--input",
            json.dumps(execution_input),
            "--name",
            "flaky-1",
            "--queue",
            "critical",
        ],
        env,
    )
    task_id = sent["task_id"]
    assert (sent["name"], sent["queue"], sent["skipped"]) == ("flaky-1", "critical", False)
    wait_until(
        lambda: len(db.dead_letters()) == 1,
        timeout=40,
        what="the flaky task to exhaust its retries",
        workers=[worker],
        diagnose=lambda: (
            db.describe("FLAKY", broker_url) + f"\ncalls: {calls.read_text() if calls.exists() else ''}"
        ),
    )
    (letter,) = db.dead_letters()
    assert (letter.task_id, letter.reason, letter.attempts, letter.queue) == (
        task_id,
        "retries_exhausted",
        3,  # SMQ_MAX_RETRIES=2: the first attempt and two retries
        "critical",  # retries stay on the queue the task came from
    )
    assert (letter.state_machine_id, letter.execution_name) == ("FLAKY", "flaky-1")
    assert "InfrastructureError" in letter.error and "simulated outage" in letter.error
    assert letter.traceback and "InfrastructureError" in letter.traceback
    assert letter.first_attempt_at is not None and letter.first_attempt_at <= letter.failed_at
    assert letter.payload["input"] == execution_input

    # The execution is visibly finished, FAILED by the dead letters, at its last checkpoint: Before ran
    # once and is recorded once; Flaky ran 3 times.
    execution = db.rows(
        "SELECT status, current_state, error, cause, lease_owner FROM smq_executions WHERE name = 'flaky-1'"
    )
    assert [(row.status, row.current_state, row.error, row.lease_owner) for row in execution] == [
        ("FAILED", "Flaky", "smq.DeadLettered", None)
    ]
    assert execution[0].cause.startswith("retries_exhausted: InfrastructureError: simulated outage")
    history = [row.state_name for row in db.rows("SELECT state_name FROM smq_history ORDER BY sequence")]
    assert history == ["Before"]
    assert calls.read_text().splitlines() == ["flaky-1 Before w1"] + ["flaky-1 Flaky w1"] * 3
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}
    stats = json.loads(smq_here(["stats", "--json"], env).stdout)
    assert stats["queues"]["critical"]["dead"] == 1 and stats["queues"]["default"]["dead"] == 0
    assert stats["executions"] == {"FAILED": 1}

    # The outage ends; retrying the dead letter resumes the execution after Before.
    flag.unlink()
    retried = smq_json(["dead", "retry", task_id], env)
    assert retried["failed"] == []
    ((item),) = retried["retried"]
    assert (item["task_id"], item["queue"]) == (task_id, "critical") and item["new_task_id"] != task_id
    assert db.dead_letters() == []  # removed once published
    wait_until(
        lambda: db.finished("FLAKY") == 1,
        timeout=30,
        what="the retried execution to finish",
        workers=[worker],
        diagnose=lambda: db.describe("FLAKY", broker_url),
    )
    db.assert_each_state_once("FLAKY", {"flaky-1"}, ["Before", "Flaky", "After", "Done"])
    assert calls.read_text().splitlines() == ["flaky-1 Before w1"] + ["flaky-1 Flaky w1"] * 4
    assert db.dead_letters() == []
    assert worker.task_ids("succeeded") == {item["new_task_id"]}


def test_out_of_range_version_is_rejected_at_once(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    repository.put_definition("PASS", PASS)
    worker = start_worker("w1", smq_env(db.url, broker_url, SMQ_MAX_RETRIES="2"))
    ids = _send_raw(
        broker_url, {"big": {"state_machine_id": "PASS", "name": "p-big", "version": 2**40}}, "default"
    )
    wait_until(
        lambda: len(db.dead_letters()) == 1,
        timeout=30,
        what="the out-of-range version to be dead-lettered",
        workers=[worker],
        diagnose=lambda: db.describe("PASS", broker_url),
    )
    (letter,) = db.dead_letters()
    assert letter.task_id == ids["big"]
    assert (letter.reason, letter.attempts) in {("invalid_payload", 1), ("rejected", 1)}, (
        f"{letter.reason} after {letter.attempts} attempt(s): {letter.error[:200]}"
    )


STUBBORN = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Task", "Resource": "count-calls", "ResultPath": "$.before", "Next": "Stuck"},
        "Stuck": {"Type": "Task", "Resource": "ignore-soft-limit", "ResultPath": "$.stuck", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
STUBBORN_AFTER_OUTAGE = {
    "StartAt": "Before",
    "States": {
        "Before": {
            "Type": "Task",
            "Resource": "infra-first-calls",
            "ResultPath": "$.before",
            "Next": "Stuck",
        },
        "Stuck": {"Type": "Task", "Resource": "ignore-soft-limit", "ResultPath": "$.stuck", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}
SUICIDAL = {
    "StartAt": "Before",
    "States": {
        "Before": {"Type": "Task", "Resource": "count-calls", "ResultPath": "$.before", "Next": "Die"},
        "Die": {"Type": "Task", "Resource": "die-while-flag", "ResultPath": "$.die", "Next": "Done"},
        "Done": {"Type": "Succeed"},
    },
}


# The soft limit must not fire in smq's own work before the stubborn state (a fresh pool process opens
# its repository on its first task): 2 s is far above that even on a loaded machine.
HARD_LIMITS = {"SMQ_SOFT_TIME_LIMIT": "2", "SMQ_HARD_TIME_LIMIT": "3", "SMQ_VISIBILITY_TIMEOUT": "10"}


def _start_stubborn(db: Db, broker_url: str, calls: Path, queue: str) -> dict[str, Any]:
    execution_input = {"seconds": 8, "calls": str(calls)}
    command = [
        "start",
        "STUBBORN",
        "--input",
        json.dumps(execution_input),
        "--name",
        "stuck-1",
        "--queue",
        queue,
    ]
    return smq_json(command, smq_env(db.url, broker_url, **HARD_LIMITS))


def test_hard_time_limit_kills_the_run_and_dead_letters_it_once(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("STUBBORN", STUBBORN)
    repository.put_definition("PASS", PASS)
    worker = start_worker("w1", smq_env(db.url, broker_url, **HARD_LIMITS))
    warm = _send_raw(broker_url, {"warm": {"state_machine_id": "PASS", "name": "before"}}, "default")
    wait_until(
        lambda: db.count("PASS", "SUCCEEDED") == 1, timeout=30, what="a warm-up task", workers=[worker]
    )
    calls = tmp_path / "calls.txt"
    sent = _start_stubborn(db, broker_url, calls, "default")
    wait_until(
        lambda: len(db.dead_letters()) >= 1,
        timeout=30,
        what="the hard time limit to dead-letter the task",
        workers=[worker],
        diagnose=lambda: db.describe("STUBBORN", broker_url),
    )
    # The worker replaced its killed pool process and goes on taking tasks.
    marker = _send_raw(broker_url, {"marker": {"state_machine_id": "PASS", "name": "after"}}, "default")
    wait_until(
        lambda: db.count("PASS", "SUCCEEDED") == 2,
        timeout=30,
        what="a task after the hard time limit",
        workers=[worker],
        diagnose=lambda: db.describe("PASS", broker_url),
    )
    (letter,) = db.dead_letters()  # Celery may report a hard time limit twice: still one dead letter
    assert (letter.task_id, letter.reason, letter.attempts) == (sent["task_id"], "time_limit", 1)
    assert "TimeLimitExceeded" in letter.error
    assert (letter.state_machine_id, letter.execution_name) == ("STUBBORN", "stuck-1")
    # Final: not retried; the execution waits at its checkpoint after Before.
    assert _received(worker, sent["task_id"]) == 1
    assert worker.task_ids("succeeded") == {warm["warm"], marker["marker"]}
    execution = db.rows("SELECT status, current_state FROM smq_executions WHERE name = 'stuck-1'")
    assert [(row.status, row.current_state) for row in execution] == [("FAILED", "Stuck")]
    history = db.rows(
        "SELECT h.state_name FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
        "WHERE e.name = 'stuck-1' ORDER BY h.sequence"
    )
    assert [row.state_name for row in history] == ["Before"]
    assert calls.read_text().splitlines() == ["stuck-1 Before w1", "stuck-1 Stuck w1"]
    assert broker_backlog(broker_url) == {"critical": 0, "default": 0, "low": 0, "unacked": 0}


def test_hard_time_limit_on_a_retry_records_that_attempt(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    """The hard limit is reported from the worker's main process: the dead letter must still count the
    attempts made (here 2: an outage, then the stuck run), not restart at 1."""
    repository.put_definition("STUBBORN_AFTER_OUTAGE", STUBBORN_AFTER_OUTAGE)
    worker = start_worker("w1", smq_env(db.url, broker_url, **HARD_LIMITS))
    calls = tmp_path / "calls.txt"
    execution_input = {"seconds": 8, "calls": str(calls), "fail": 1}
    command = ["start", "STUBBORN_AFTER_OUTAGE", "--input", json.dumps(execution_input), "--name", "stuck-2"]
    sent = smq_json(command, smq_env(db.url, broker_url, **HARD_LIMITS))
    letter = _the_dead_letter(
        db,
        worker,
        broker_url,
        "STUBBORN_AFTER_OUTAGE",
        "the hard time limit to dead-letter the retried task",
        timeout=40,
        settle=0.5,
    )
    assert (letter.task_id, letter.reason, letter.attempts) == (sent["task_id"], "time_limit", 2)
    assert letter.queue == "default"
    assert calls.read_text().splitlines() == [
        "stuck-2 Before w1",
        "stuck-2 Before w1",
        "stuck-2 Stuck w1",
    ]


def test_hard_time_limit_dead_letter_keeps_the_queue_it_ran_on(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("STUBBORN", STUBBORN)
    worker = start_worker("w1", smq_env(db.url, broker_url, **HARD_LIMITS))
    sent = _start_stubborn(db, broker_url, tmp_path / "calls.txt", "critical")
    letter = _the_dead_letter(
        db, worker, broker_url, "STUBBORN", "the hard time limit to dead-letter the task", settle=0.5
    )
    assert (letter.task_id, letter.reason) == (sent["task_id"], "time_limit")
    assert letter.queue == "critical", f"dead letter recorded on queue {letter.queue!r}"


def test_a_task_that_keeps_killing_its_pool_process_ends_dead_after_smq_max_retries(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("SUICIDAL", SUICIDAL)
    env = smq_env(db.url, broker_url, SMQ_MAX_RETRIES="2")  # backoff 0.1 s, at most 0.2 s
    worker = start_worker("w1", env)
    flag = tmp_path / "die.flag"
    flag.write_text("die")
    calls = tmp_path / "calls.txt"
    execution_input = {"flag": str(flag), "calls": str(calls)}
    command = [
        "start",
        "SUICIDAL",
        "--input",
        json.dumps(execution_input),
        "--name",
        "die-1",
        "--queue",
        "critical",
    ]
    sent = smq_json(command, env)

    def die_calls() -> int:
        return calls.read_text().count("die-1 Die ") if calls.exists() else 0

    # Each attempt kills its pool process; with a 0.1-0.2 s backoff the next follows within seconds.
    wait_until(
        lambda: die_calls() >= 2,
        timeout=8,
        what="the second attempt after the pool process died",
        workers=[worker],
        diagnose=lambda: db.describe("SUICIDAL", broker_url) + "\n" + worker.tail(8),
    )
    letter = _the_dead_letter(
        db, worker, broker_url, "SUICIDAL", "the task to be dead-lettered after SMQ_MAX_RETRIES"
    )
    assert (letter.task_id, letter.reason, letter.queue, letter.attempts) == (
        sent["task_id"],
        "worker_lost",
        "critical",
        3,
    )
    assert die_calls() == 3 and _received(worker, sent["task_id"]) == 3
    execution = db.rows("SELECT status, current_state FROM smq_executions WHERE name = 'die-1'")
    assert [(row.status, row.current_state) for row in execution] == [("FAILED", "Die")]
    # smq's curve, not Celery's flat delay: retry n waits its delay from SMQ_RETRY_DELAYS (0.1, 0.2)
    # within +-20%.
    waits = [
        float(when)
        for when in re.findall(rf"{sent['task_id']}\] retry: Retry in ([0-9.e-]+)s", worker.stderr())
    ]
    assert len(waits) == 2, worker.tail(20)
    assert 0.08 <= waits[0] <= 0.12 < 0.16 <= waits[1] <= 0.24, waits


def test_a_payload_max_retries_also_bounds_the_retries_of_a_dying_pool_process(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    repository.put_definition("SUICIDAL", SUICIDAL)
    worker = start_worker("w1", smq_env(db.url, broker_url, SMQ_MAX_RETRIES="2"))
    flag, calls = tmp_path / "die.flag", tmp_path / "calls.txt"
    flag.write_text("die")
    payload = {
        "state_machine_id": "SUICIDAL",
        "name": "die-once",
        "input": {"flag": str(flag), "calls": str(calls)},
        "options": {"max_retries": 0},
    }
    ids = _send_raw(broker_url, {"once": payload}, "default")
    letter = _the_dead_letter(
        db, worker, broker_url, "SUICIDAL", "the task to be dead-lettered after its first attempt"
    )
    assert (letter.task_id, letter.reason, letter.attempts) == (ids["once"], "worker_lost", 1)
    assert calls.read_text().count("die-once Die ") == 1
    assert _received(worker, ids["once"]) == 1
