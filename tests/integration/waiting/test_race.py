"""The message/timeout race: for 200 parked executions the message and the due timer are fired at the
same moment, from several threads each. One conditional UPDATE decides every wait, so exactly one
side wins per execution, and its continuation runs once even when it is delivered twice at once.

No workers: WaitStore is driven directly (fire_due with a `now` past the deadline), and the
continuations run in this process. On SQLite and on PostgreSQL (row locks with SKIP LOCKED)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from smq import Repository, Settings, StartRequest, start_execution
from smq.execution.continuation import Continuation
from smq.launching import continue_executions
from smq.repository.waits import WaitStore, Woken

RACE = "wt-race"
KEY = "wt-race-key"
TOTAL = 200
SENDERS = 6
FIRERS = 2
DEFINITION = {
    "StartAt": "Await",
    "States": {
        "Await": {
            "Type": "Message",
            "CorrelationKey": KEY,
            "CorrelationValuePath": "$.id",
            "TimeoutSeconds": 60,
            "TimeoutPath": "Late",
            "ResultPath": "$.msg",
            "Next": "Paid",
        },
        "Paid": {"Type": "Pass", "Parameters": {"paid.$": "$.msg.n"}, "End": True},
        "Late": {"Type": "Pass", "Parameters": {"late.$": "$.id"}, "End": True},
    },
}


def _json(value: object) -> object:
    """JSON columns read with plain SQL: decoded by PostgreSQL's driver, text on SQLite."""
    return json.loads(value) if isinstance(value, str) else value


def _rows(repository: Repository, sql: str, **params: object) -> list:
    with repository.engine.connect() as connection:
        return list(connection.execute(text(sql), params))


@pytest.mark.timeout(120)
def test_message_and_timer_fired_together_have_one_winner_each(repository: Repository) -> None:
    repository.put_definition(RACE, DEFINITION)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parked = list(
            pool.map(
                lambda i: start_execution(repository, StartRequest(RACE, {"id": f"r-{i}"}, name=f"race-{i}")),
                range(TOTAL),
            )
        )
    assert {record.status for record in parked} == {"WAITING"}
    ids = {f"r-{i}": record.execution_id for i, record in enumerate(parked)}
    store = WaitStore(repository.engine)
    past_deadline = datetime.now(UTC) + timedelta(seconds=61)

    by_message: list[Woken] = []
    by_timer: list[Woken] = []
    lock = threading.Lock()
    barrier = threading.Barrier(SENDERS + FIRERS)
    senders_done = threading.Event()
    errors: list[BaseException] = []

    def send(offset: int) -> None:
        try:
            barrier.wait()
            for i in range(offset, TOTAL, SENDERS):
                woken = store.send_message(KEY, f"r-{i}", {"n": i})
                with lock:
                    by_message.extend(woken)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    def fire() -> None:
        try:
            barrier.wait()
            while True:
                finishing = senders_done.is_set()
                woken = store.fire_due(now=past_deadline, limit=2)
                with lock:
                    by_timer.extend(woken)
                if not woken and finishing:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(SENDERS)]
    firers = [threading.Thread(target=fire) for _ in range(FIRERS)]
    for thread in threads + firers:
        thread.start()
    for thread in threads:
        thread.join(60)
    senders_done.set()
    for thread in firers:
        thread.join(60)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads + firers)

    won_by_message = {w.execution_id for w in by_message}
    won_by_timer = {w.execution_id for w in by_timer}
    print(f"message won {len(won_by_message)}, timer won {len(won_by_timer)}")
    assert len(by_message) == len(won_by_message) and len(by_timer) == len(won_by_timer)  # none twice
    assert won_by_message & won_by_timer == set()
    assert won_by_message | won_by_timer == set(ids.values())
    assert {w.resolution for w in by_message} <= {"message"} and {w.resolution for w in by_timer} <= {
        "timeout"
    }

    # The database agrees: one RESOLVED wait per execution with the winner's resolution, every
    # message recorded, resuming its execution only where the message won.
    waits = _rows(
        repository,
        "SELECT execution_id, status, resolution FROM smq_waits WHERE execution_id IN "
        "(SELECT id FROM smq_executions WHERE state_machine_id = :m)",
        m=RACE,
    )
    assert len(waits) == TOTAL
    assert {(w.execution_id, w.status, w.resolution) for w in waits} == {
        (eid, "RESOLVED", "message" if eid in won_by_message else "timeout") for eid in ids.values()
    }
    messages = _rows(
        repository, "SELECT correlation_value, resumed FROM smq_messages WHERE correlation_key = :k", k=KEY
    )
    resumed = {json.loads(m.correlation_value): _json(m.resumed) for m in messages}
    assert len(messages) == TOTAL
    assert resumed == {value: ([eid] if eid in won_by_message else []) for value, eid in ids.items()}

    # Continuations: every woken execution is continued twice, at the same time (a duplicate
    # delivery): the checkpoint admits one, so each records its Message state exactly once.
    settings = Settings(database_url=repository.engine.url.render_as_string(hide_password=False))
    names = {record.execution_id: record.name for record in parked}
    items = [Continuation(RACE, names[w.execution_id]) for w in [*by_message, *by_timer]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(pool.map(lambda item: continue_executions(repository, [item], settings), items * 2))
    assert sum(s.ran for s in summaries) == 2 * TOTAL and sum(s.failed for s in summaries) == 0

    executions = {
        row.id: row
        for row in _rows(
            repository, "SELECT id, status, output FROM smq_executions WHERE state_machine_id = :m", m=RACE
        )
    }
    expected = {
        eid: ("SUCCEEDED", {"paid": int(value[2:])} if eid in won_by_message else {"late": value})
        for value, eid in ids.items()
    }
    assert {eid: (row.status, _json(row.output)) for eid, row in executions.items()} == expected
    paths: dict[str, list[tuple[str, str]]] = {}
    for row in _rows(
        repository,
        "SELECT h.execution_id, h.state_name, h.status FROM smq_history h JOIN smq_executions e "
        "ON e.id = h.execution_id WHERE e.state_machine_id = :m ORDER BY h.execution_id, h.sequence",
        m=RACE,
    ):
        paths.setdefault(row.execution_id, []).append((row.state_name, row.status))
    assert paths == {
        eid: [("Await", "SUCCEEDED"), ("Paid", "SUCCEEDED")]
        if eid in won_by_message
        else [("Await", "TIMED_OUT"), ("Late", "SUCCEEDED")]
        for eid in ids.values()
    }
    # Nothing is left to fire, now or later.
    assert store.fire_due(now=past_deadline + timedelta(days=1)) == []
