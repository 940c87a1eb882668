"""The trace context an execution keeps between runs (SMQ_TRACING): one column, read when a run
begins and written when it ends, so the next run's span can link to the last one's."""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from smq.repository.tables import EXECUTIONS


def read_trace_context(engine: Engine, execution_id: str) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            select(EXECUTIONS.c.trace_context).where(EXECUTIONS.c.id == execution_id)
        ).scalar()


def write_trace_context(engine: Engine, execution_id: str, traceparent: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(EXECUTIONS).where(EXECUTIONS.c.id == execution_id).values(trace_context=traceparent)
        )
