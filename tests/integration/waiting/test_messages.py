"""Message states on real workers: 1,000 parked executions resumed once each by their messages, and
Message timeouts fired by `smq scheduler` (TimeoutPath, or States.Timeout without one).

Everything is read back from PostgreSQL: executions, smq_history, smq_waits, smq_messages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smq import Operations, QueueClient, Repository, Settings
from tests.integration.distributed.harness import client_app, run_smq, smq_here, wait_until
from tests.integration.waiting.support import (
    Deployment,
    Scheduler,
    execution,
    history,
    local,
    run_tool,
    waits,
)

# ------------------------------------------------------------------------------ 1,000 messages

ORDERS = "wt-orders"
PAYMENT = "wt-payment"
TOTAL = 1000
SHARED = 20  # the last SHARED executions all wait on the same correlation value
ORDERS_DEFINITION = {
    "StartAt": "Prep",
    "States": {
        "Prep": {"Type": "Pass", "Parameters": {"order.$": "$.order", "i.$": "$.i"}, "Next": "AwaitPayment"},
        "AwaitPayment": {
            "Type": "Message",
            "CorrelationKey": PAYMENT,
            "CorrelationValuePath": "$.order",
            "ResultPath": "$.payment",
            "Next": "Done",
        },
        "Done": {
            "Type": "Pass",
            "Parameters": {
                "order.$": "$.order",
                "i.$": "$.i",
                "paid.$": "$.payment.amount",
                "payment.$": "$.payment",
            },
            "End": True,
        },
    },
}


def order_of(i: int) -> str:
    return "shared" if i > TOTAL - SHARED else f"o-{i}"


def data_of(order: str) -> dict[str, object]:
    return {"amount": 0 if order == "shared" else int(order[2:]), "ref": f"tx-{order}"}


@pytest.mark.timeout(170)
def test_a_thousand_parked_executions_each_resume_exactly_once(
    deployment: Deployment, pg_repository: Repository, tmp_path: Path
) -> None:
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(ORDERS, ORDERS_DEFINITION)
    inputs = tmp_path / "orders.jsonl"
    inputs.write_text("".join(json.dumps({"order": order_of(i), "i": i}) + "\n" for i in range(1, TOTAL + 1)))
    names = {f"msg-{i}" for i in range(1, TOTAL + 1)}

    run_smq(["start", ORDERS, "--inputs", str(inputs), "--name-prefix", "msg-"], env)
    wait_until(
        lambda: db.count(ORDERS, "WAITING") == TOTAL,
        timeout=120,
        what=f"{TOTAL} executions WAITING",
        workers=deployment.workers,
        diagnose=lambda: db.describe(ORDERS, deployment.broker_url),
    )
    # Parked: one open message wait each, on its own canonical correlation value, nothing run past it.
    parked = db.rows(
        "SELECT e.name, w.kind, w.status, w.correlation_key, w.correlation_value, w.due_at "
        "FROM smq_executions e JOIN smq_waits w ON w.execution_id = e.id WHERE e.state_machine_id = :m",
        m=ORDERS,
    )
    assert len(parked) == TOTAL
    assert {(r.kind, r.status, r.correlation_key, r.due_at) for r in parked} == {
        ("message", "WAITING", PAYMENT, None)
    }
    assert {r.name: json.loads(r.correlation_value) for r in parked} == {
        f"msg-{i}": order_of(i) for i in range(1, TOTAL + 1)
    }
    assert (
        db.scalar(
            "SELECT count(*) FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
            "WHERE e.state_machine_id = :m AND h.state_name <> 'Prep'",
            m=ORDERS,
        )
        == 0
    )

    ids = {
        row.name: row.id
        for row in db.rows("SELECT id, name FROM smq_executions WHERE state_machine_id = :m", m=ORDERS)
    }
    orders = sorted({order_of(i) for i in range(1, TOTAL + 1)})
    messages = tmp_path / "messages.json"
    messages.write_text(json.dumps([{"key": PAYMENT, "value": o, "data": data_of(o)} for o in orders]))
    answers = run_tool(["send", str(messages), "--threads", "8"], env)

    expected_resumed = {
        o: sorted(ids[f"msg-{i}"] for i in range(1, TOTAL + 1) if order_of(i) == o) for o in orders
    }
    assert {o: sorted(a["resumed"]) for o, a in zip(orders, answers, strict=True)} == expected_resumed
    assert sum(a["continuations"]["enqueued"] for a in answers) == TOTAL
    assert sum(a["continuations"]["failed"] for a in answers) == 0

    wait_until(
        lambda: db.count(ORDERS, "SUCCEEDED") == TOTAL,
        timeout=120,
        what=f"{TOTAL} executions SUCCEEDED",
        workers=deployment.workers,
        diagnose=lambda: db.describe(ORDERS, deployment.broker_url),
    )
    db.assert_each_state_once(ORDERS, names, ["Prep", "AwaitPayment", "Done"])
    outputs = {
        r.name: r.output
        for r in db.rows("SELECT name, output FROM smq_executions WHERE state_machine_id = :m", m=ORDERS)
    }
    assert outputs == {
        f"msg-{i}": {
            "order": order_of(i),
            "i": i,
            "paid": data_of(order_of(i))["amount"],
            "payment": data_of(order_of(i)),
        }
        for i in range(1, TOTAL + 1)
    }
    resolved = db.rows(
        "SELECT w.status, w.resolution, count(*) AS n FROM smq_waits w JOIN smq_executions e ON e.id = w.execution_id "
        "WHERE e.state_machine_id = :m GROUP BY w.status, w.resolution",
        m=ORDERS,
    )
    assert [tuple(r) for r in resolved] == [("RESOLVED", "message", TOTAL)]
    recorded = db.rows(
        "SELECT correlation_value, data, resumed FROM smq_messages WHERE correlation_key = :k", k=PAYMENT
    )
    assert sorted((json.loads(r.correlation_value), sorted(r.resumed)) for r in recorded) == sorted(
        expected_resumed.items()
    )

    # The same messages again (a sample, and the shared one): nobody waits any more. Each is answered
    # "no match" and recorded with resumed = [].
    repeated = [o for o in orders if o == "shared" or int(o[2:]) % 20 == 0]
    operations = Operations(pg_repository, Settings(database_url=db.url))  # no broker: nothing published
    with ThreadPoolExecutor(max_workers=8) as pool:
        again = list(pool.map(lambda o: operations.send_message(PAYMENT, o, data_of(o)).to_dict(), repeated))
    assert [(a["matched"], a["resumed"], a["continuations"]["ran"]) for a in again] == [(0, [], 0)] * len(
        repeated
    )
    done = smq_here(
        ["message", "send", "--key", PAYMENT, "--value", "o-7", "--data", '{"amount": 99}'],
        local(env),
        expect=1,
    )
    assert "no match" in done.stdout
    last = db.rows(
        "SELECT correlation_value, data, resumed FROM smq_messages WHERE correlation_key = :k ORDER BY id DESC LIMIT 1",
        k=PAYMENT,
    )[0]
    assert (json.loads(last.correlation_value), last.data, last.resumed) == ("o-7", {"amount": 99}, [])
    assert (
        db.scalar("SELECT count(*) FROM smq_messages WHERE correlation_key = :k", k=PAYMENT)
        == len(orders) + len(repeated) + 1
    )
    unanswered = db.rows(
        "SELECT correlation_value FROM smq_messages WHERE correlation_key = :k AND resumed = '[]'::jsonb",
        k=PAYMENT,
    )
    assert sorted(json.loads(r.correlation_value) for r in unanswered) == sorted([*repeated, "o-7"])
    time.sleep(1.0)  # anything wrongly enqueued by the repeats would run now
    assert db.status_counts(ORDERS) == {"SUCCEEDED": TOTAL}
    assert history(db, ids["msg-7"]) == [
        ("Prep", "SUCCEEDED", None),
        ("AwaitPayment", "SUCCEEDED", None),
        ("Done", "SUCCEEDED", None),
    ]
    assert execution(db, ORDERS, "msg-7").output["payment"] == data_of("o-7")


# ------------------------------------------------------------------------------ timeouts

LATE = "wt-late"
STRICT = "wt-strict"
ANSWERED = "wt-answered"
DEADLINE = "wt-deadline"


def _awaiting(timeout_path: bool, seconds: int = 1) -> dict[str, object]:
    await_state: dict[str, object] = {
        "Type": "Message",
        "CorrelationKey": DEADLINE,
        "CorrelationValuePath": "$.id",
        "TimeoutSeconds": seconds,
        "ResultPath": "$.msg",
        "Next": "OnTime",
    }
    states: dict[str, object] = {
        "Await": await_state,
        "OnTime": {"Type": "Pass", "Parameters": {"on_time.$": "$.msg"}, "End": True},
    }
    if timeout_path:
        await_state["TimeoutPath"] = "Late"
        states["Late"] = {"Type": "Pass", "Parameters": {"late.$": "$.id"}, "End": True}
    return {"StartAt": "Await", "States": states}


@pytest.mark.timeout(120)
def test_message_timeouts_are_fired_by_the_scheduler(
    deployment: Deployment, pg_repository: Repository, scheduler: Callable[..., Scheduler]
) -> None:
    db, env = deployment.db, deployment.env
    pg_repository.put_definition(LATE, _awaiting(timeout_path=True))
    pg_repository.put_definition(STRICT, _awaiting(timeout_path=False))
    pg_repository.put_definition(ANSWERED, _awaiting(timeout_path=True))
    started = [(LATE, f"late-{i}") for i in range(1, 6)] + [(STRICT, f"strict-{i}") for i in range(1, 4)]
    started.append((ANSWERED, "answered"))
    app = client_app(deployment.broker_url)
    try:
        client = QueueClient(pg_repository, app)
        for machine, name in started:
            client.enqueue({"state_machine_id": machine, "name": name, "input": {"id": name}})
    finally:
        app.close()
    wait_until(
        lambda: sum(db.count(m, "WAITING") for m in (LATE, STRICT, ANSWERED)) == len(started),
        timeout=30,
        what=f"{len(started)} executions parked",
        workers=deployment.workers,
    )
    # No dispatcher runs yet, so the answered one's message wins even if its 1 s has passed: a timeout
    # takes effect when it is fired, and then only on a wait still WAITING.
    run_smq(["message", "send", "--key", DEADLINE, "--value", "answered", "--data", '{"ok": 1}'], env)
    running = scheduler(env)
    wait_until(
        lambda: db.finished(LATE) == 5 and db.finished(STRICT) == 3 and db.finished(ANSWERED) == 1,
        timeout=30,
        what="8 Message timeouts and 1 message",
        workers=deployment.workers,
        diagnose=lambda: f"{db.describe(LATE)}\n{db.describe(STRICT)}\n{running.log()[-2000:]}",
    )
    for i in range(1, 6):
        row = execution(db, LATE, f"late-{i}")
        assert (row.status, row.output, row.error) == ("SUCCEEDED", {"late": f"late-{i}"}, None)
        assert history(db, row.id) == [("Await", "TIMED_OUT", "States.Timeout"), ("Late", "SUCCEEDED", None)]
        assert [(w.kind, w.status, w.resolution) for w in waits(db, row.id)] == [
            ("message", "RESOLVED", "timeout")
        ]
        assert (row.stop_time - row.start_time).total_seconds() >= 1.0
    for i in range(1, 4):
        row = execution(db, STRICT, f"strict-{i}")
        assert (row.status, row.error) == ("FAILED", "States.Timeout")
        assert f"strict-{i}" in row.cause
        assert history(db, row.id) == [("Await", "FAILED", "States.Timeout")]
        assert [(w.kind, w.status, w.resolution) for w in waits(db, row.id)] == [
            ("message", "RESOLVED", "timeout")
        ]
    # The answered one's timer was past due while the scheduler ran, but its wait was resolved.
    row = execution(db, ANSWERED, "answered")
    assert (row.status, row.output) == ("SUCCEEDED", {"on_time": {"ok": 1}})
    assert history(db, row.id) == [("Await", "SUCCEEDED", None), ("OnTime", "SUCCEEDED", None)]
    [answered_wait] = waits(db, row.id)
    assert (answered_wait.status, answered_wait.resolution) == ("RESOLVED", "message")
    assert answered_wait.timeout_at < datetime.now(UTC)

    # A message after the timeout finds nobody.
    late = smq_here(
        ["message", "send", "--key", DEADLINE, "--value", "late-1", "--json"], local(env), expect=1
    )
    assert json.loads(late.stdout)["resumed"] == []
    assert execution(db, LATE, "late-1").output == {"late": "late-1"}
    assert running.alive()
