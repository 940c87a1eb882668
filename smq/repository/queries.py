"""The repository's reads: definitions, executions and their history, filtered lists, keyset streams and
statistics. Every one goes through `reader` (autocommit on PostgreSQL) and writes nothing; the writes
are `smq.repository.repository.Repository`'s own."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, not_, select, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from smq.repository.filters import ExecutionFilter
from smq.repository.paging import ExecutionPage, Keyset
from smq.repository.records import (
    DefinitionRecord,
    ExecutionKey,
    ExecutionRecord,
    HistoryRecord,
    NotFound,
    execution_columns,
    execution_record,
    history_record,
    iso,
)
from smq.repository.tables import CHAIN_LINKS, DEFINITIONS, EXECUTIONS, HISTORY

# One row per state machine (what `definitions list` shows), as a subquery so it pages like a table.
DEFINITION_SUMMARY = (
    select(
        DEFINITIONS.c.state_machine_id,
        func.max(DEFINITIONS.c.version).label("latest_version"),
        func.count().label("versions"),
        func.max(DEFINITIONS.c.created_at).label("updated_at"),
    )
    .group_by(DEFINITIONS.c.state_machine_id)
    .subquery("definition_summary")
)
EXECUTION_PAGES = Keyset("executions", (EXECUTIONS.c.start_time, EXECUTIONS.c.id))
HISTORY_PAGES = Keyset("history", (HISTORY.c.sequence,))
DEFINITION_PAGES = Keyset(
    "definitions", (DEFINITION_SUMMARY.c.updated_at, DEFINITION_SUMMARY.c.state_machine_id)
)


def _definition_summary(row: Any) -> dict[str, Any]:
    return {
        "state_machine_id": row.state_machine_id,
        "latest_version": row.latest_version,
        "versions": row.versions,
        "updated_at": iso(row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)),
    }


class Reads:
    """The read side of `Repository` (which sets `reader`)."""

    reader: Engine

    # ------------------------------------------------------------------ definitions

    def _latest_definition_row(self, state_machine_id: str) -> Any:
        with self.reader.connect() as connection:
            return connection.execute(
                select(DEFINITIONS)
                .where(DEFINITIONS.c.state_machine_id == state_machine_id)
                .order_by(DEFINITIONS.c.version.desc())
                .limit(1)
            ).first()

    def get_definition(self, state_machine_id: str, version: int | None = None) -> DefinitionRecord:
        if version is None:
            row = self._latest_definition_row(state_machine_id)
        else:
            with self.reader.connect() as connection:
                row = connection.execute(
                    select(DEFINITIONS).where(
                        DEFINITIONS.c.state_machine_id == state_machine_id, DEFINITIONS.c.version == version
                    )
                ).first()
        if row is None:
            what = f"version {version} of " if version is not None else ""
            raise NotFound(f"no {what}state machine {state_machine_id!r}")
        return DefinitionRecord(row.state_machine_id, row.version, row.definition, row.created_at)

    def list_definitions(self) -> list[dict[str, Any]]:
        """One row per state machine: latest version, number of versions, last change (by id)."""
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(DEFINITION_SUMMARY).order_by(DEFINITION_SUMMARY.c.state_machine_id)
            ).all()
        return [_definition_summary(row) for row in rows]

    def page_definitions(
        self, *, limit: int = 50, page_token: str | None = None, oldest_first: bool = False
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of `list_definitions`' rows, the most recently changed first unless `oldest_first`,
        and the next page's token."""
        with self.reader.connect() as connection:
            rows, next_token = DEFINITION_PAGES.page(
                connection,
                select(DEFINITION_SUMMARY),
                limit=limit,
                page_token=page_token,
                oldest_first=oldest_first,
            )
        return [_definition_summary(row) for row in rows], next_token

    # ------------------------------------------------------------------ executions

    def get_execution(self, execution_id: str) -> ExecutionRecord:
        with self.reader.connect() as connection:
            row = connection.execute(
                select(*execution_columns(self.reader.dialect.name)).where(EXECUTIONS.c.id == execution_id)
            ).first()
        if row is None:
            raise NotFound(f"no execution with id {execution_id!r}")
        return execution_record(row)

    def find_execution(self, state_machine_id: str, name: str) -> ExecutionRecord | None:
        with self.reader.connect() as connection:
            row = connection.execute(
                select(*execution_columns(self.reader.dialect.name)).where(
                    EXECUTIONS.c.state_machine_id == state_machine_id, EXECUTIONS.c.name == name
                )
            ).first()
        return None if row is None else execution_record(row)

    def resolve_execution(self, reference: str) -> ExecutionRecord:
        """An execution by id, or by `STATE_MACHINE_ID/NAME`."""
        try:
            return self.get_execution(reference)
        except NotFound:
            if "/" in reference:
                machine_id, _, name = reference.partition("/")
                found = self.find_execution(machine_id, name)
                if found is not None:
                    return found
            raise NotFound(f"no execution with id {reference!r} (or STATE_MACHINE_ID/NAME)") from None

    # ------------------------------------------------------------------ queries

    def filter_clauses(self, flt: ExecutionFilter) -> list[Any]:
        """The WHERE clauses of a filter, for statements built elsewhere in the repository (retention)."""
        return self._where(flt)

    def _where(self, flt: ExecutionFilter) -> list[Any]:
        clauses: list[Any] = []
        c = EXECUTIONS.c
        if flt.state_machine_id is not None:
            clauses.append(c.state_machine_id == flt.state_machine_id)
        if flt.statuses:
            clauses.append(c.status.in_(flt.statuses))
        if flt.name_prefix is not None:
            clauses.append(c.name.startswith(flt.name_prefix, autoescape=True))
        if flt.name_contains is not None:
            clauses.append(c.name.contains(flt.name_contains, autoescape=True))
        if flt.started_after is not None:
            clauses.append(c.start_time > flt.started_after)
        if flt.started_before is not None:
            clauses.append(c.start_time < flt.started_before)
        if flt.current_state is not None:
            clauses.append(c.current_state == flt.current_state)
        if flt.source_execution_id is not None:
            clauses.append(c.source_execution_id == flt.source_execution_id)
        if flt.tags and self.reader.dialect.name == "postgresql":
            # Every tag at once, as one containment the GIN index on tags answers.
            clauses.append(type_coerce(c.tags, JSONB).contains(dict(flt.tags)))
        elif flt.tags:
            clauses.extend(func.json_extract(c.tags, f'$."{key}"') == value for key, value in flt.tags)
        if flt.not_chained_into is not None:
            clauses.append(
                not_(
                    exists().where(
                        CHAIN_LINKS.c.source_execution_id == c.id,
                        CHAIN_LINKS.c.target_state_machine_id == flt.not_chained_into,
                    )
                )
            )
        return clauses

    def list_executions(self, flt: ExecutionFilter | None = None) -> list[ExecutionRecord]:
        flt = flt or ExecutionFilter()
        query = (
            select(EXECUTIONS)
            .where(and_(True, *self._where(flt)))
            .order_by(EXECUTIONS.c.start_time, EXECUTIONS.c.id)
            .offset(flt.offset)
        )
        if flt.limit is not None:
            query = query.limit(flt.limit)
        with self.reader.connect() as connection:
            return [execution_record(row) for row in connection.execute(query)]

    def page_executions(
        self,
        flt: ExecutionFilter | None = None,
        *,
        limit: int = 50,
        page_token: str | None = None,
        oldest_first: bool = False,
    ) -> ExecutionPage:
        """One page of matching executions, newest first unless `oldest_first`; pass the page's
        `next_token` back for the next page. Keyset, so any page of a million rows costs the same."""
        query = select(EXECUTIONS).where(and_(True, *self._where(flt or ExecutionFilter())))
        with self.reader.connect() as connection:
            rows, next_token = EXECUTION_PAGES.page(
                connection, query, limit=limit, page_token=page_token, oldest_first=oldest_first
            )
        return ExecutionPage([execution_record(row) for row in rows], next_token)

    def count_executions(self, flt: ExecutionFilter | None = None) -> int:
        flt = flt or ExecutionFilter()
        query = select(func.count()).select_from(EXECUTIONS).where(and_(True, *self._where(flt)))
        with self.reader.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def stream_executions(
        self, flt: ExecutionFilter | None = None, *, page_size: int = 1000
    ) -> Iterator[ExecutionRecord]:
        """Every matching execution in (start_time, id) order, one page in memory at a time.

        Keyset pagination: each page starts after the last (start_time, id) seen, so the cost of a page
        does not grow with its position and memory stays flat for millions of rows.
        """
        for row in self._keyset(flt, page_size, [EXECUTIONS]):
            yield execution_record(row)

    def stream_execution_keys(
        self, flt: ExecutionFilter | None = None, *, page_size: int = 1000
    ) -> Iterator[ExecutionKey]:
        """Like `stream_executions`, but only what names a chained execution: no payloads are read."""
        c = EXECUTIONS.c
        for row in self._keyset(flt, page_size, [c.id, c.name, c.state_machine_id]):
            yield ExecutionKey(row.id, row.name, row.state_machine_id)

    def _keyset(self, flt: ExecutionFilter | None, page_size: int, columns: list[Any]) -> Iterator[Any]:
        flt = flt or ExecutionFilter()
        c = EXECUTIONS.c
        remaining = flt.limit
        after: tuple[datetime, str] | None = None
        skip = flt.offset
        wanted = [*columns, c.start_time.label("_keyset_start"), c.id.label("_keyset_id")]
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining + skip)
            query = select(*wanted).where(and_(True, *self._where(flt)))
            if after is not None:
                start, last_id = after
                # A row-value comparison, so the index range starts right after the last row seen.
                query = query.where(tuple_(c.start_time, c.id) > tuple_(start, last_id))
            query = query.order_by(c.start_time, c.id).limit(size)
            with self.reader.connect() as connection:
                rows = connection.execute(query).all()
            if not rows:
                return
            after = (rows[-1]._keyset_start, rows[-1]._keyset_id)
            for row in rows:
                if skip:
                    skip -= 1
                    continue
                yield row
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return
            if len(rows) < size:
                return

    def history(self, execution_id: str) -> list[HistoryRecord]:
        self.get_execution(execution_id)  # NotFound for an unknown id rather than an empty list
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(HISTORY).where(HISTORY.c.execution_id == execution_id).order_by(HISTORY.c.sequence)
            ).all()
        return [history_record(row) for row in rows]

    def page_history(
        self,
        execution_id: str,
        *,
        limit: int = 50,
        page_token: str | None = None,
        oldest_first: bool = True,
    ) -> tuple[list[HistoryRecord], str | None]:
        """A page of an execution's history, in the order it happened unless not `oldest_first`."""
        self.get_execution(execution_id)  # NotFound for an unknown id rather than an empty page
        with self.reader.connect() as connection:
            rows, next_token = HISTORY_PAGES.page(
                connection,
                select(HISTORY).where(HISTORY.c.execution_id == execution_id),
                limit=limit,
                page_token=page_token,
                oldest_first=oldest_first,
            )
        return [history_record(row) for row in rows], next_token

    def last_output_of_state(self, execution_id: str, state_name: str) -> Any:
        """The output of the last successful visit of a top-level state (for chaining from a state)."""
        with self.reader.connect() as connection:
            row = connection.execute(
                select(HISTORY.c.output)
                .where(
                    HISTORY.c.execution_id == execution_id,
                    HISTORY.c.state_name == state_name,
                    HISTORY.c.scope == "",
                    HISTORY.c.status.in_(("SUCCEEDED", "CAUGHT")),
                )
                .order_by(HISTORY.c.sequence.desc())
                .limit(1)
            ).first()
        if row is None:
            raise NotFound(f"execution {execution_id} has no completed visit of state {state_name!r}")
        return row.output

    def chained_targets(self, source_execution_id: str) -> list[ExecutionRecord]:
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(EXECUTIONS)
                .join(CHAIN_LINKS, CHAIN_LINKS.c.target_execution_id == EXECUTIONS.c.id)
                .where(CHAIN_LINKS.c.source_execution_id == source_execution_id)
                .order_by(EXECUTIONS.c.start_time, EXECUTIONS.c.id)
            ).all()
        return [execution_record(row) for row in rows]

    def status_counts_of(self, state_machine_id: str, names: list[str]) -> dict[str, int]:
        """Executions per status among these names of one machine (names not started: not counted);
        1,000 names per query."""
        c = EXECUTIONS.c
        counts: dict[str, int] = {}
        with self.reader.connect() as connection:
            for start in range(0, len(names), 1000):
                rows = connection.execute(
                    select(c.status, func.count())
                    .where(c.state_machine_id == state_machine_id, c.name.in_(names[start : start + 1000]))
                    .group_by(c.status)
                )
                for status, count in rows:
                    counts[status] = counts.get(status, 0) + int(count)
        return counts

    def count_by_status(self) -> dict[str, int]:
        """Executions per status, all machines together (cheap: one grouped count)."""
        c = EXECUTIONS.c
        with self.reader.connect() as connection:
            rows = connection.execute(select(c.status, func.count()).group_by(c.status).order_by(c.status))
            return {status: int(count) for status, count in rows}

    def stats(self, state_machine_id: str | None = None) -> list[dict[str, Any]]:
        """Per state machine and status: count, and mean/p50/p95/p99 duration of finished executions."""
        c = EXECUTIONS.c
        query = select(
            c.state_machine_id, c.status, func.count().label("count"), func.avg(c.duration_ms).label("mean")
        )
        if state_machine_id is not None:
            query = query.where(c.state_machine_id == state_machine_id)
        query = query.group_by(c.state_machine_id, c.status).order_by(c.state_machine_id, c.status)
        results = []
        with self.reader.connect() as connection:
            for row in connection.execute(query).all():
                entry: dict[str, Any] = {
                    "state_machine_id": row.state_machine_id,
                    "status": row.status,
                    "count": row.count,
                    "mean_ms": None if row.mean is None else round(float(row.mean), 3),
                }
                finished = connection.execute(
                    select(func.count()).where(
                        c.state_machine_id == row.state_machine_id,
                        c.status == row.status,
                        c.duration_ms.is_not(None),
                    )
                ).scalar_one()
                for label, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
                    entry[label] = None
                    if finished:
                        rank = min(finished - 1, max(0, math.ceil(fraction * finished) - 1))  # nearest rank
                        entry[label] = connection.execute(
                            select(c.duration_ms)
                            .where(
                                c.state_machine_id == row.state_machine_id,
                                c.status == row.status,
                                c.duration_ms.is_not(None),
                            )
                            .order_by(c.duration_ms)
                            .offset(rank)
                            .limit(1)
                        ).scalar_one()
                results.append(entry)
        return results
