"""The task answers to the design's name, `execute_state_machine`, and to its old name
`smq.execute_state_machine` (messages queued before the rename, older clients): a real worker runs a
message published by name under each, the dead letters record the name it came under, and clients
publish the design's name."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from smq.distributed.client import QueueClient
from smq.distributed.task_names import LEGACY_TASK_NAMES, TASK_NAME
from smq.repository.repository import Repository
from tests.integration.distributed.harness import Db, Worker, client_app, run_smq, smq_env, wait_until

PASS = {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}
FAIL_VERSION = {"state_machine_id": "PASS", "name": "poison", "version": "two"}


def test_messages_published_under_either_name_run_and_clients_use_the_design_name(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    assert TASK_NAME == "execute_state_machine"
    assert "smq.execute_state_machine" in LEGACY_TASK_NAMES
    repository.put_definition("PASS", PASS)
    worker = start_worker("w1", smq_env(db.url, broker_url))
    app = client_app(broker_url)
    names = {TASK_NAME: "by-design-name", LEGACY_TASK_NAMES[0]: "by-old-name"}
    sent: dict[str, str] = {}
    try:
        for task_name, execution in names.items():
            sent[task_name] = str(uuid.uuid4())
            # The payload's index and user keys (tags, and options smq does not know) ride along.
            payload = {
                "state_machine_id": "PASS",
                "name": execution,
                "index": 4,
                "options": {"customer": "c-1"},
                "tags": {"team": "ops"},
            }
            app.send_task(task_name, args=[payload], queue="default", task_id=sent[task_name])
        poison_id = str(uuid.uuid4())
        app.send_task(LEGACY_TASK_NAMES[0], args=[FAIL_VERSION], queue="default", task_id=poison_id)
        # The client publishes under the design's name.
        client = QueueClient(repository, app)
        enqueued = client.enqueue({"state_machine_id": "PASS", "name": "by-client"}, "default")
    finally:
        app.close()
    wait_until(
        lambda: db.count("PASS", "SUCCEEDED") == 3 and len(db.dead_letters()) == 1,
        timeout=40,
        what="three executions and one dead letter",
        workers=[worker],
        diagnose=lambda: db.describe("PASS", broker_url) + "\n" + worker.tail(20),
    )
    for execution in (*names.values(), "by-client"):
        record = repository.find_execution("PASS", execution)
        assert record is not None and (record.status, record.output) == ("SUCCEEDED", {"ok": True})
        if execution != "by-client":
            assert (record.index, record.tags) == (4, {"customer": "c-1", "team": "ops"})
    log = worker.stderr()
    assert f"execute_state_machine[{sent[TASK_NAME]}] received" in log
    assert f"smq.execute_state_machine[{sent[LEGACY_TASK_NAMES[0]]}] received" in log
    assert f" execute_state_machine[{enqueued.task_id}] received" in log  # not under the old name
    assert "unknown_task" not in log and "not registered" not in log.lower()
    (letter,) = db.dead_letters()
    assert (letter.task_id, letter.task_name, letter.reason) == (
        poison_id,
        "smq.execute_state_machine",
        "invalid_payload",
    )


FAIL = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Order.Bad", "Cause": "always"}}}


def test_start_wait_blocks_until_the_worker_ends_it_and_exits_with_its_code(
    db: Db, repository: Repository, broker_url: str, start_worker: Callable[..., Worker]
) -> None:
    repository.put_definition("PASS", PASS)
    repository.put_definition("FAIL", FAIL)
    env = smq_env(db.url, broker_url)
    start_worker("w1", env)
    ok = run_smq(["start", "PASS", "--name", "w-1", "--wait", "--json"], env)
    body = json.loads(ok.stdout)  # with --json only the end is printed
    assert (body["status"], body["output"], body["name"]) == ("SUCCEEDED", {"ok": True}, "w-1")
    failed = run_smq(["start", "FAIL", "--name", "w-2", "--wait"], env, expect=1)
    assert failed.stdout.startswith("FAIL/w-2 enqueued on default (task ")
    assert " w-2 FAILED" in failed.stdout and "Order.Bad: always" in failed.stderr
