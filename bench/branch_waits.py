"""Callback answers inside a Map: the cost of one answer at 50, 400 and 5,000 waiting iterations.

A Map whose N iterations each wait on a callback token parks once with N wait rows and N branch rows
(smq.engine.branch_rows); each answer marks its iteration's row, wakes the execution, runs that
iteration on, and parks it again writing only that row. The goal (issue 22.3): an answer costs the
same at 10 and at 10,000 waiting iterations. Printed per backend (SQLite, PostgreSQL) and N: ms per
answer in the Map; the ratio of each N's cost to the smallest N's (the named baseline run: the
50-iteration Map, goal at 5,000 within 1.5x); and, as before, the same answers to N separate
executions of a one-state machine, each parked on its own token, with the ratio Map / separate.

Both run in this process (no broker: `Operations` continues what it wakes right here), on a fresh
SQLite file and a fresh PostgreSQL database (``smq_bench_branch_<pid>`` next to ``--pg-url``'s, dropped
at the end), answers sent one after the other. The separate-executions baseline runs at each N up
to ``--separate-max`` (default 400: it costs the same whatever N).

Verified: every execution SUCCEEDED with each answer in its place, each callback task called once,
and no wait or branch row left open.

Usage::

    python bench/branch_waits.py                      # N = 50, 400, 5000 on SQLite and PostgreSQL
    python bench/branch_waits.py --sizes 100 1000 --backends sqlite --json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.progress import log
from harness.report import console, emit_report
from harness.servers import DEFAULT_PG_URL, fresh_database

ASK = {
    "Type": "Task",
    "Resource": "ask.waitForTaskToken",
    "Parameters": {"token.$": "$$.Task.Token", "order.$": "$.order"},
    "ResultPath": "$.answer",
    "End": True,
}
SINGLE = {"StartAt": "Ask", "States": {"Ask": ASK}}
MAP = {
    "StartAt": "Each",
    "States": {
        "Each": {"Type": "Map", "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": ASK}}, "End": True}
    },
}


@dataclass
class Round:
    backend: str
    size: int
    single_ms: float | None = None  # per answer, N separate executions (None: not run at this N)
    map_ms: float = 0.0  # per answer, one Map of N iterations
    baseline_ms: float = 0.0  # per answer in the Map of the smallest N, same backend
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.map_ms / self.single_ms if self.single_ms else None

    @property
    def growth(self) -> float:
        """This N's cost per answer over the smallest N's: 1.0 is flat."""
        return self.map_ms / self.baseline_ms if self.baseline_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "iterations": self.size,
            "map_ms_per_answer": round(self.map_ms, 2),
            "over_smallest": round(self.growth, 2),
            "separate_ms_per_answer": None if self.single_ms is None else round(self.single_ms, 2),
            "map_over_separate": None if self.ratio is None else round(self.ratio, 2),
            "verified": not self.problems,
            "problems": self.problems,
        }


class Asker:
    """The callback handler: remembers each order's token, counts its calls."""

    def __init__(self) -> None:
        from smq import HandlerRegistry

        self.tokens: dict[int, str] = {}
        self.calls = 0
        self.registry = HandlerRegistry()
        self.registry.register("ask", self._ask)

    def _ask(self, payload: Any, ctx: Any) -> None:
        self.tokens[payload["order"]] = payload["token"]
        self.calls += 1


def answer_all(repository: Any, url: str, asker: Asker, orders: list[int]) -> float:
    """Answer every order's token, one after the other (each continuation runs here); ms per answer."""
    from smq import Operations, Settings

    operations = Operations(repository, Settings(database_url=url), handlers=asker.registry)
    started = time.perf_counter()
    for n in orders:
        operations.task_success(asker.tokens[n], {"ok": n})
    return (time.perf_counter() - started) * 1000 / len(orders)


def measure(repository: Any, url: str, backend: str, size: int, tag: str, separate: bool) -> Round:
    from smq import StartRequest, start_execution
    from smq.repository.waits import WaitStore

    result = Round(backend, size)
    orders = list(range(size))

    if separate:
        asker = Asker()
        singles = [
            start_execution(
                repository, StartRequest("single", {"order": n}, name=f"{tag}-{n}"), handlers=asker.registry
            )
            for n in orders
        ]
        result.single_ms = answer_all(repository, url, asker, orders)
        done = [repository.get_execution(record.execution_id) for record in singles]
        if [record.output["answer"] for record in done if record.status == "SUCCEEDED"] != [
            {"ok": n} for n in orders
        ]:
            result.problems.append("separate executions: not every one SUCCEEDED with its answer")
        if asker.calls != size:
            result.problems.append(f"separate executions: {asker.calls} callback calls, expected {size}")

    asker = Asker()
    parked = start_execution(
        repository,
        StartRequest("map", [{"order": n} for n in orders], name=f"{tag}-map"),
        handlers=asker.registry,
    )
    result.map_ms = answer_all(repository, url, asker, orders)
    record = repository.get_execution(parked.execution_id)
    if record.status != "SUCCEEDED" or record.output != [{"order": n, "answer": {"ok": n}} for n in orders]:
        result.problems.append(f"map: {record.status}, output not every answer in its place")
    if asker.calls != size:
        result.problems.append(f"map: {asker.calls} callback calls, expected {size}")
    if WaitStore(repository.engine).open_waits(parked.execution_id):
        result.problems.append("map: waits left open")
    if branch_rows_left(repository, parked.execution_id):
        result.problems.append("map: branch rows left")
    return result


def branch_rows_left(repository: Any, execution_id: str) -> int:
    from sqlalchemy import func, select

    from smq.repository.tables import BRANCHES

    with repository.engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count()).select_from(BRANCHES).where(BRANCHES.c.execution_id == execution_id)
            ).scalar_one()
        )


@contextmanager
def backend_url(backend: str, pg_url: str) -> Iterator[str]:
    """A fresh, migrated database of `backend`: a SQLite file in a temporary directory, or a PostgreSQL
    database next to `pg_url`'s (dropped at the end)."""
    if backend == "postgresql":
        with fresh_database(pg_url, f"smq_bench_branch_{os.getpid()}") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="smq-bench-branch-") as directory:
        yield f"sqlite:///{directory}/smq.db"


def run_backend(backend: str, pg_url: str, sizes: list[int], separate_max: int) -> list[Round]:
    from smq import Repository

    rounds: list[Round] = []
    with backend_url(backend, pg_url) as url:
        repository = Repository.open(url, auto_upgrade=True)
        try:
            repository.put_definition("single", SINGLE)
            repository.put_definition("map", MAP)
            for size in sizes:
                separate = size <= separate_max
                log(
                    f"{backend}: {size} answers{': separate executions, then' if separate else ' to'} one Map"
                )
                rounds.append(measure(repository, url, backend, size, f"n{size}", separate))
        finally:
            repository.close()
    for r in rounds:
        r.baseline_ms = rounds[0].map_ms
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 400, 5000], help="iterations per Map")
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--separate-max", type=int, default=400, help="largest N the separate-executions baseline runs at"
    )
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", metavar="PATH")
    args = parser.parse_args(argv)
    sizes = sorted(args.sizes)
    rounds: list[Round] = []
    for backend in args.backends:
        rounds.extend(run_backend(backend, args.pg_url, sizes, args.separate_max))
    verdicts = {}
    for backend in args.backends:
        mine = [r for r in rounds if r.backend == backend]
        verdicts[backend] = {
            "baseline": f"Map of {mine[0].size} iterations",
            "largest_over_baseline": round(mine[-1].growth, 2),
            "goal_1_5x": mine[-1].growth <= 1.5,
        }
    report = {
        "rounds": [r.as_dict() for r in rounds],
        "growth": verdicts,
        "verified": all(not r.problems for r in rounds),
    }

    def tables() -> None:
        from rich import box
        from rich.table import Table

        table = Table(
            title="Callback answers in one Map of N waiting iterations (baseline: the smallest N's Map)",
            box=box.SIMPLE_HEAD,
        )
        for column in ("backend", "N", "Map ms/answer", "over baseline", "separate ms/answer", "Map / separate", "result"):  # fmt: skip
            table.add_column(column, justify="right")
        for r in rounds:
            verdict = "verified" if not r.problems else "; ".join(r.problems)
            table.add_row(
                r.backend,
                f"{r.size:,}",
                f"{r.map_ms:.1f}",
                f"{r.growth:.2f}x",
                "-" if r.single_ms is None else f"{r.single_ms:.1f}",
                "-" if r.ratio is None else f"{r.ratio:.1f}x",
                verdict,
            )
        console(120).print(table)
        for backend, verdict in verdicts.items():
            console(120).print(
                f"{backend}: {sizes[-1]:,} iterations cost {verdict['largest_over_baseline']:.2f}x "
                f"the {verdict['baseline']} per answer (goal: within 1.5x)"
            )

    emit_report(report, args.save, args.json, tables)
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
