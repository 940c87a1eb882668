"""Keyset pages of executions (`Repository.page_executions`) on SQLite and PostgreSQL: newest first
by default, every row exactly once across pages, ties on start_time broken by id, filters kept, and
tokens that refuse to be replayed the wrong way or forged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from smq import ExecutionFilter, Repository
from smq.errors import InvalidPageToken
from smq.repository.tables import EXECUTIONS

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def insert_rows(repository: Repository, count: int) -> list[tuple[datetime, str]]:
    """`count` executions, three to a second (ties on start_time), every third FAILED."""
    rows = []
    for i in range(count):
        start = BASE + timedelta(seconds=i // 3)
        rows.append(
            {
                "id": f"id-{(i * 7919) % 1000:04d}-{i:04d}",
                "name": f"n-{i:04d}",
                "state_machine_id": "paging",
                "version": 1,
                "status": "FAILED" if i % 3 == 0 else "SUCCEEDED",
                "start_time": start,
                "updated_at": start,
                "history_length": 0,
            }
        )
    with repository.engine.begin() as connection:
        connection.execute(EXECUTIONS.insert(), rows)
    return [(row["start_time"], row["id"]) for row in rows]


def walk(
    repository: Repository, flt: ExecutionFilter | None, limit: int, oldest_first: bool
) -> list[list[str]]:
    pages, token = [], None
    while True:
        page = repository.page_executions(flt, limit=limit, page_token=token, oldest_first=oldest_first)
        pages.append([record.execution_id for record in page.executions])
        token = page.next_token
        if token is None:
            return pages


@pytest.mark.parametrize("oldest_first", [False, True])
def test_pages_cover_every_row_once_in_order(repository: Repository, oldest_first: bool) -> None:
    keys = insert_rows(repository, 23)
    expected = [execution_id for _, execution_id in sorted(keys, reverse=not oldest_first)]
    pages = walk(repository, None, 5, oldest_first)
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [execution_id for page in pages for execution_id in page] == expected


def test_a_full_last_page_has_no_next_token(repository: Repository) -> None:
    insert_rows(repository, 10)
    pages = walk(repository, None, 5, False)
    assert [len(page) for page in pages] == [5, 5]


def test_filters_hold_on_every_page(repository: Repository) -> None:
    keys = insert_rows(repository, 30)
    failed = {execution_id for i, (_, execution_id) in enumerate(keys) if i % 3 == 0}
    pages = walk(repository, ExecutionFilter(statuses=("FAILED",)), 4, False)
    seen = [execution_id for page in pages for execution_id in page]
    assert sorted(seen) == sorted(failed)
    assert len(seen) == len(set(seen)) == 10


def test_rows_inserted_meanwhile_do_not_shift_later_pages(repository: Repository) -> None:
    keys = insert_rows(repository, 9)
    first = repository.page_executions(limit=4)
    with repository.engine.begin() as connection:
        newer = BASE + timedelta(hours=1)
        connection.execute(
            EXECUTIONS.insert(),
            [
                {
                    "id": "zz-new",
                    "name": "new",
                    "state_machine_id": "paging",
                    "version": 1,
                    "status": "RUNNING",
                    "start_time": newer,
                    "updated_at": newer,
                    "history_length": 0,
                }
            ],
        )
    rest = repository.page_executions(limit=10, page_token=first.next_token)
    expected = [execution_id for _, execution_id in sorted(keys, reverse=True)]
    assert [r.execution_id for r in first.executions + rest.executions] == expected


def test_tokens_refuse_the_other_order_and_forgeries(repository: Repository) -> None:
    insert_rows(repository, 6)
    token = repository.page_executions(limit=2).next_token
    assert token is not None
    with pytest.raises(InvalidPageToken, match="other order"):
        repository.page_executions(limit=2, page_token=token, oldest_first=True)
    for forged in ("not-a-token", "W10", token[:-3] + "!!!"):
        with pytest.raises(InvalidPageToken, match="not a token"):
            repository.page_executions(limit=2, page_token=forged)
    with pytest.raises(ValueError, match="limit"):
        repository.page_executions(limit=0)
