"""Part 4 of bench/waiting.py: message-to-resume latency, against part 1's bare Celery latency.

K executions park on a Message state, each with its own correlation value; messages are sent at a
steady rate with ``Operations.send_message``. Latency = the resumed execution's next state entered
minus the time just before the call; the call's own duration is reported beside it."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from harness.figures import Stats
from sqlalchemy import text

from scenarios.waiting.bare import send_paced
from scenarios.waiting.checks import HISTORY_ROWS, Problems, check_resumed_once, finish_checks
from scenarios.waiting.rig import (
    MESSAGE_KEY,
    MESSAGE_MACHINE,
    MESSAGE_STATES,
    Rig,
    epoch,
    finished_count,
    park,
    wait_for,
)


@dataclass
class Messages:
    count: int
    rate: float
    sent_rate: float = 0.0
    create_seconds: float = 0.0
    call: Stats = field(default_factory=Stats)  # the send_message call itself
    started: Stats = field(default_factory=Stats)  # send -> Message state completed on a worker
    next_state: Stats = field(default_factory=Stats)  # send -> next state entered
    ok: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "executions": self.count,
            "target_rate": self.rate,
            "sent_per_second": round(self.sent_rate, 1),
            "create_seconds": round(self.create_seconds, 2),
            "send_message_call": self.call.as_dict(),
            "send_to_started": self.started.as_dict(),
            "send_to_next_state": self.next_state.as_dict(),
            "verified": self.ok,
            "detail": self.detail,
        }


MESSAGE_ROWS = (
    """
SELECT e.id, e.name, e.status, e.input, e.output,
       w.n AS waits, w.resolutions,
       h.n AS rows, h.wait_n, h.next_n, h.wait_exit, h.next_enter, h.all_succeeded
FROM smq_executions e
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           string_agg(kind || ':' || status || ':' || coalesce(resolution, ''), ',') AS resolutions
    FROM smq_waits WHERE execution_id = e.id
) w ON true
"""
    + HISTORY_ROWS
)


def message_value(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}"


def run_messages(
    args: argparse.Namespace,
    rig: Rig,
    machine: str = MESSAGE_MACHINE,
    count: int | None = None,
    rate: float | None = None,
) -> Messages:
    count = args.messages if count is None else count
    rate = args.message_rate if rate is None else rate
    result = Messages(count, rate)
    prefix = "m" if machine == MESSAGE_MACHINE else "warm"
    repo = rig.repo
    inputs = [(f"{prefix}-{i:06d}", {"id": message_value(prefix, i)}) for i in range(count)]
    result.create_seconds = park(rig.client, repo, machine, inputs, rig.alive, f"{machine} parked")
    sends: dict[str, tuple[float, float, list[str]]] = {}  # value -> (before, after, resumed ids)

    def send(index: int) -> None:
        value = message_value(prefix, index)
        before = time.time()
        resumed = rig.operations.send_message(MESSAGE_KEY, value, {"i": index})
        after = time.time()
        sends[value] = (before, after, [w.execution_id for w in resumed.executions])
        if resumed.continued.enqueued != len(resumed.executions) or resumed.continued.failed:
            raise RuntimeError(f"send_message({value!r}): continuations {resumed.continued.to_dict()}")

    result.sent_rate = send_paced(count, rate, send)
    wait_for(lambda: finished_count(repo, machine), count, f"{machine} finished", rig.alive, poll=0.25)
    time.sleep(0.5)
    problems = Problems()
    with repo.reader.connect() as connection:
        rows = list(
            connection.execute(
                text(MESSAGE_ROWS),
                {"sm": machine, "wait_state": MESSAGE_STATES[0], "next_state": MESSAGE_STATES[1]},
            )
        )
        messages: dict[str, list[Any]] = {}
        for value, resumed in connection.execute(
            text("SELECT correlation_value, resumed FROM smq_messages WHERE correlation_key = :key"),
            {"key": MESSAGE_KEY},
        ):
            messages.setdefault(json.loads(value), []).append(resumed)
    if len(rows) != count:
        problems.add("executions found", f"{len(rows)}, expected {count}")
    calls: list[float] = []
    started: list[float] = []
    next_state: list[float] = []
    for row in rows:
        value = row.input.get("id")
        before, after, resumed_ids = sends.get(value, (None, None, []))
        check_resumed_once(problems, row, "message", MESSAGE_STATES)
        if resumed_ids != [row.id]:
            problems.add("send_message did not resume exactly this execution", f"{row.name}: {resumed_ids}")
        if messages.get(value) != [[row.id]]:
            problems.add(
                "smq_messages does not show one message resuming it", f"{row.name}: {messages.get(value)}"
            )
        index = int(value.rsplit("-", 1)[1])
        if not isinstance(row.output, dict) or row.output.get("message") != {"i": index}:
            problems.add("message data not in the output", f"{row.name}: {row.output}")
        if before is None or after is None:
            continue
        calls.append(after - before)
        for moment, lags in ((epoch(row.wait_exit), started), (epoch(row.next_enter), next_state)):
            if moment is not None:
                lags.append(moment - before)
    result.call, result.started, result.next_state = Stats.of(calls), Stats.of(started), Stats.of(next_state)
    result.ok, result.detail = not problems.counts, problems.text()
    finish_checks(result, repo, rig.broker)
    return result
