"""Answers to callback tasks inside a Map, against the same answers to separate executions.

A Map whose N iterations each wait on a callback token parks once with N wait rows; each answer wakes
the execution, runs that iteration on, and parks it again with the others' progress (which lives in
the execution's checkpoint). The baseline is N executions of a one-state machine, each parked on its
own callback token: each answer wakes and finishes one small execution. Both run in this process
(no broker: `Operations` continues what it wakes right here) against one fresh PostgreSQL database
(``smq_bench_branch_<pid>`` next to ``--pg-url``'s, dropped at the end), answers sent one after the
other. Printed per N: ms per answer for each, and the ratio Map / separate executions.

Verified: every execution SUCCEEDED with each answer in its place, each callback task called once,
and no wait left open.

Usage::

    python bench/branch_waits.py                      # N = 50, 200, 400
    python bench/branch_waits.py --sizes 100 1000 --json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
    size: int
    single_ms: float = 0.0  # per answer, N separate executions
    map_ms: float = 0.0  # per answer, one Map of N iterations
    problems: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.map_ms / self.single_ms if self.single_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "iterations": self.size,
            "separate_ms_per_answer": round(self.single_ms, 2),
            "map_ms_per_answer": round(self.map_ms, 2),
            "map_over_separate": round(self.ratio, 2),
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


def measure(repository: Any, url: str, size: int, tag: str) -> Round:
    from smq import StartRequest, start_execution
    from smq.repository.waits import WaitStore

    result = Round(size)
    orders = list(range(size))

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
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 400], help="iterations per Map")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", metavar="PATH")
    args = parser.parse_args(argv)
    rounds: list[Round] = []
    with fresh_database(args.pg_url, f"smq_bench_branch_{os.getpid()}") as url:
        from smq import Repository

        repository = Repository.open(url)
        try:
            repository.put_definition("single", SINGLE)
            repository.put_definition("map", MAP)
            for size in args.sizes:
                log(f"{size} answers: separate executions, then one Map")
                rounds.append(measure(repository, url, size, f"n{size}"))
        finally:
            repository.close()
    report = {"rounds": [r.as_dict() for r in rounds], "verified": all(not r.problems for r in rounds)}

    def tables() -> None:
        from rich import box
        from rich.table import Table

        table = Table(title="Callback answers: one Map of N iterations vs N separate executions (PostgreSQL)",
                      box=box.SIMPLE_HEAD)  # fmt: skip
        for column in ("N", "separate ms/answer", "Map ms/answer", "Map / separate", "result"):
            table.add_column(column, justify="right")
        for r in rounds:
            verdict = "verified" if not r.problems else "; ".join(r.problems)
            table.add_row(f"{r.size:,}", f"{r.single_ms:.1f}", f"{r.map_ms:.1f}", f"{r.ratio:.1f}x", verdict)
        console(120).print(table)

    emit_report(report, args.save, args.json, tables)
    return 0 if report["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
