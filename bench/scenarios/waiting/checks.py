"""What every part of bench/waiting.py verifies once its executions have finished: each resumed exactly
once (one wait resolved by its kind, the wait state and the next one once each in history), no
message left queued or unacknowledged, no dead letter. Problems are counted by kind, one example each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scenarios.waiting.bare import Bare
    from scenarios.waiting.messages import Messages
    from scenarios.waiting.timers import Timers
import time

import redis
from harness.queues import leftover_messages
from sqlalchemy import text


def queue_leftovers(broker: redis.Redis) -> list[str]:
    """Messages still queued or unacknowledged (all should be gone once a part has finished)."""
    return leftover_messages(broker, "{} message(s) left in the queues", "{} unacknowledged message(s)")


def dead_letters(repo: Any) -> int:
    with repo.reader.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM smq_dead_letters")).scalar_one())


# One execution's history: its rows, how often it entered the wait state and the next one, when it
# left the first and entered the second (appended to TIMER_ROWS and MESSAGE_ROWS).
HISTORY_ROWS = """LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE state_name = :wait_state) AS wait_n,
           count(*) FILTER (WHERE state_name = :next_state) AS next_n,
           max(exited_at) FILTER (WHERE state_name = :wait_state) AS wait_exit,
           max(entered_at) FILTER (WHERE state_name = :next_state) AS next_enter,
           bool_and(status = 'SUCCEEDED') AS all_succeeded
    FROM smq_history WHERE execution_id = e.id
) h ON true
WHERE e.state_machine_id = :sm
"""


class Problems:
    """Counts of what failed verification, by kind, with one example each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def extend(self, problems: list[str]) -> None:
        for problem in problems:
            self.add(problem, "")

    def text(self) -> str:
        return "; ".join(
            f"{kind}: {count}" + (f" (e.g. {self.examples[kind]})" if self.examples[kind] else "")
            for kind, count in self.counts.items()
        )


def check_resumed_once(problems: Problems, row: Any, kind: str, states: tuple[str, str]) -> None:
    """What every parked execution must show at the end (a TIMER_ROWS or MESSAGE_ROWS row): SUCCEEDED,
    exactly one wait of `kind` resolved by a `kind`, and the wait state then the next one once each."""
    if row.status != "SUCCEEDED":
        problems.add(f"status {row.status}", row.name)
    if row.waits != 1 or row.resolutions != f"{kind}:RESOLVED:{kind}":
        problems.add(f"not exactly one {kind} wait, resolved by the {kind}", f"{row.name}: {row.resolutions}")
    if row.rows != 2 or row.wait_n != 1 or row.next_n != 1 or not row.all_succeeded:
        problems.add(f"history not {states[0]} once then {states[1]} once", f"{row.name}: {row.rows} rows")


def finish_checks(result: Timers | Messages | Bare, repo: Any, broker: redis.Redis) -> None:
    time.sleep(0.5)  # late acknowledgement: the last ack follows the last checkpoint
    problems = queue_leftovers(broker)
    dead = dead_letters(repo)
    if dead:
        problems.append(f"{dead} dead letter(s)")
    if problems:
        result.ok = False
        result.detail = "; ".join(filter(None, [result.detail, *problems]))
