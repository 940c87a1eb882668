"""Every listing command on SQLite and PostgreSQL: newest first by default (`--oldest-first` reverses;
an execution's history in the order it happened), keyset pages whose `--next-token` the page before
prints (stderr in text mode, a field in `--json`), `--all` streamed, tokens refused on the wrong
listing or order; `executions count --json`; `executions show` as text, and as JSON only with --json.
Commands run in this process (click's runner)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from smq.repository.queue_records import DeadLetters
from smq.repository.repository import Repository
from smq.repository.tables import DEAD_LETTERS, DEFINITIONS, EXECUTIONS, HISTORY
from tests.integration.cli import Smq

BASE = datetime(2026, 3, 1, tzinfo=UTC)
PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


@pytest.fixture
def smq(database_url: str) -> Smq:
    return Smq(database_url)


def seed_executions(repository: Repository, count: int) -> list[str]:
    """`count` executions of `pass`, a second apart, two to a second (ties broken by id); returns
    their names oldest first."""
    rows = []
    for i in range(count):
        start = BASE + timedelta(seconds=i // 2)
        rows.append(
            {
                "id": f"id-{i:03d}",
                "name": f"n-{i:03d}",
                "state_machine_id": "pass",
                "version": 1,
                "status": "SUCCEEDED" if i % 4 else "FAILED",
                "start_time": start,
                "updated_at": start,
                "history_length": 0,
            }
        )
    with repository.engine.begin() as connection:
        connection.execute(EXECUTIONS.insert(), rows)
    return [row["name"] for row in rows]


def names(body: dict) -> list[str]:
    return [item["name"] for item in body["executions"]]


def test_executions_list_pages_newest_first(smq: Smq, repository: Repository) -> None:
    oldest_first = seed_executions(repository, 11)
    newest_first = oldest_first[::-1]

    first = smq.json("executions", "list", "--limit", "4")
    assert names(first) == newest_first[:4] and first["next_token"]
    second = smq.json("executions", "list", "--limit", "4", "--next-token", first["next_token"])
    third = smq.json("executions", "list", "--limit", "4", "--next-token", second["next_token"])
    assert names(second) + names(third) == newest_first[4:] and third["next_token"] is None

    everything = smq.json("executions", "list", "--all")
    assert names(everything) == newest_first and everything["next_token"] is None
    assert names(smq.json("executions", "list", "--all", "--oldest-first")) == oldest_first
    failed = smq.json("executions", "list", "--filter", "status=FAILED", "--oldest-first")
    assert names(failed) == oldest_first[::4]

    # Text: the table on stdout, the next page's option on stderr.
    text = smq("executions", "list", "--limit", "3")
    assert [line.split()[0] for line in text.stdout.splitlines()[2:]] == newest_first[:3]
    token = re.fullmatch(r"next page: --next-token (\S+)\n", text.stderr)
    assert token is not None, text.stderr
    rest = smq("executions", "list", "--limit", "20", "--next-token", token.group(1))
    assert [line.split()[0] for line in rest.stdout.splitlines()[2:]] == newest_first[3:]
    assert rest.stderr == ""  # the last page names no next one

    # Tokens are refused on the other order, on another listing, and when forged: exit 2, named.
    wrong_order = smq("executions", "list", "--oldest-first", "--next-token", first["next_token"], expect=2)
    assert "other order" in wrong_order.stderr
    assert "not a token" in smq("executions", "list", "--next-token", "forged", expect=2).stderr
    assert "--all" in smq("executions", "list", "--all", "--next-token", first["next_token"], expect=2).stderr


def test_count_json_and_show_text_or_json(smq: Smq, repository: Repository) -> None:
    seed_executions(repository, 5)
    assert smq.json("executions", "count") == {"count": 5}
    assert smq.json("executions", "count", "--filter", "status=FAILED") == {"count": 2}
    assert smq("executions", "count").stdout == "5\n"

    shown = smq("executions", "show", "pass/n-001").stdout
    assert "execution    pass/n-001" in shown and "id           id-001" in shown
    assert "status       SUCCEEDED" in shown and not shown.lstrip().startswith("{")
    body = smq.json("executions", "show", "id-001")
    assert (body["execution_id"], body["name"], body["status"]) == ("id-001", "n-001", "SUCCEEDED")


def test_history_pages_in_the_order_it_happened(smq: Smq, repository: Repository) -> None:
    seed_executions(repository, 1)
    moment = BASE
    with repository.engine.begin() as connection:
        connection.execute(
            HISTORY.insert(),
            [
                {
                    "execution_id": "id-000",
                    "sequence": sequence,
                    "state_name": f"S{sequence}",
                    "state_type": "Pass",
                    "status": "SUCCEEDED",
                    "scope": "",
                    "attempt": 1,
                    "entered_at": moment,
                    "exited_at": moment,
                }
                for sequence in range(1, 8)
            ],
        )
    first = smq.json("executions", "history", "pass/n-000", "--limit", "5")
    assert [entry["sequence"] for entry in first["history"]] == [1, 2, 3, 4, 5]
    rest = smq.json("executions", "history", "pass/n-000", "--next-token", first["next_token"])
    assert [entry["sequence"] for entry in rest["history"]] == [6, 7] and rest["next_token"] is None
    newest = smq.json("executions", "history", "id-000", "--newest-first", "--limit", "2")
    assert [entry["sequence"] for entry in newest["history"]] == [7, 6]
    # A token of another listing is refused.
    refused = smq("executions", "list", "--next-token", first["next_token"], expect=2)
    assert "made for the history listing" in refused.stderr


def test_definitions_and_dead_letters_page_newest_first(smq: Smq, repository: Repository) -> None:
    with repository.engine.begin() as connection:
        connection.execute(
            DEFINITIONS.insert(),
            [
                {
                    "state_machine_id": f"m-{i}",
                    "version": 1,
                    "definition": PASS,
                    "digest": f"d{i}",
                    "created_at": BASE + timedelta(minutes=i),
                }
                for i in range(5)
            ],
        )
    first = smq.json("definitions", "list", "--limit", "3")
    assert [d["state_machine_id"] for d in first["definitions"]] == ["m-4", "m-3", "m-2"]
    rest = smq.json("definitions", "list", "--limit", "3", "--next-token", first["next_token"])
    assert [d["state_machine_id"] for d in rest["definitions"]] == ["m-1", "m-0"]
    assert [
        d["state_machine_id"] for d in smq.json("definitions", "list", "--oldest-first")["definitions"]
    ] == [f"m-{i}" for i in range(5)]

    letters = DeadLetters(repository.engine)
    for i in range(4):
        letters.record(
            task_id=f"t-{i}",
            task_name="execute_state_machine",
            queue="low" if i % 2 else "default",
            reason="invalid_payload",
            payload={"state_machine_id": "pass", "name": f"d-{i}"},
            error="bad",
            traceback=None,
            attempts=1,
        )
    with repository.engine.begin() as connection:
        for i in range(4):
            connection.execute(
                DEAD_LETTERS.update()
                .where(DEAD_LETTERS.c.task_id == f"t-{i}")
                .values(failed_at=BASE + timedelta(seconds=i))
            )
    page = smq.json("dead", "list", "--limit", "3")
    assert [d["task_id"] for d in page["dead_letters"]] == ["t-3", "t-2", "t-1"]
    last = smq.json("dead", "list", "--next-token", page["next_token"])
    assert [d["task_id"] for d in last["dead_letters"]] == ["t-0"] and last["next_token"] is None
    low = smq.json("dead", "list", "--queue", "low", "--oldest-first")
    assert [d["task_id"] for d in low["dead_letters"]] == ["t-1", "t-3"]
