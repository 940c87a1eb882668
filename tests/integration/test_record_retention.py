"""Messages sent and dead letters do not grow without end (SQLite and PostgreSQL): the scheduler's
retention chore deletes those older than SMQ_RETENTION, batch by batch within its time budget, and
`smq dead purge --all --older-than` deletes old dead letters on demand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from smq.execution.pruning import PruneChore
from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.repository.tables import DEAD_LETTERS, MESSAGES
from tests.integration.cli import Smq

NOW = datetime.now(UTC)


def _messages(repository: Repository, count: int, days_ago: float, key: str) -> None:
    """`count` messages sent `days_ago` days ago (inserted in time order, as sends are)."""
    with repository.engine.begin() as connection:
        connection.execute(
            MESSAGES.insert(),
            [
                {
                    "correlation_key": key,
                    "correlation_value": f'"{i}"',
                    "data": {"i": i},
                    "resumed": [],
                    "sent_at": NOW - timedelta(days=days_ago, seconds=-i),
                }
                for i in range(count)
            ],
        )


def _letters(
    repository: Repository, count: int, days_ago: float, prefix: str, queue: str = "default"
) -> None:
    store = DeadLetters(repository.engine)
    for i in range(count):
        store.record(
            task_id=f"{prefix}-{i}",
            task_name="execute_state_machine",
            queue=queue,
            reason="rejected",
            payload={"not": "an execution"},
            error="InvalidPayload: bad",
            traceback=None,
            attempts=1,
        )
    with repository.engine.begin() as connection:
        connection.execute(
            update(DEAD_LETTERS)
            .where(DEAD_LETTERS.c.task_id.like(f"{prefix}-%"))
            .values(failed_at=NOW - timedelta(days=days_ago))
        )


def _count(repository: Repository, table: object, *where: object) -> int:
    with repository.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def test_the_chore_prunes_old_messages_and_dead_letters_within_its_budget(repository: Repository) -> None:
    _messages(repository, 7, days_ago=40, key="old")
    _messages(repository, 2, days_ago=1, key="new")
    _letters(repository, 4, days_ago=40, prefix="old")
    _letters(repository, 2, days_ago=1, prefix="new")
    chore = PruneChore(repository, retention_seconds=30 * 86400, max_seconds=0.0, batch_size=3)
    runs = [chore.run() for _ in range(4)]
    assert [(run["messages"], run["dead_letters"]) for run in runs] == [(3, 3), (3, 1), (1, 0), (0, 0)]
    assert (
        _count(repository, MESSAGES) == 2
        and _count(repository, MESSAGES, MESSAGES.c.correlation_key == "new") == 2
    )
    assert sorted(letter.task_id for letter in DeadLetters(repository.engine).list()) == ["new-0", "new-1"]


def test_dead_purge_older_than(repository: Repository, database_url: str) -> None:
    _letters(repository, 3, days_ago=20, prefix="old")
    _letters(repository, 1, days_ago=20, prefix="old-low", queue="low")
    _letters(repository, 2, days_ago=1, prefix="new")
    smq = Smq(database_url)
    assert (
        "--older-than goes with --all" in smq("dead", "purge", "old-0", "--older-than", "1d", expect=2).stderr
    )
    assert "--older-than" in smq("dead", "purge", "--all", "--older-than", "soon", "--yes", expect=2).stderr
    low = smq.json("dead", "purge", "--all", "--queue", "low", "--older-than", "14d")
    assert low == {"deleted": 1}
    purged = smq("dead", "purge", "--all", "--older-than", "14d", "--yes")
    assert purged.stdout.strip() == "3 dead letter(s) deleted"
    assert sorted(letter.task_id for letter in DeadLetters(repository.engine).list()) == ["new-0", "new-1"]
