"""bench/engine.py's report: smq against moto per workflow as a table, or as a JSON document."""

from __future__ import annotations

import argparse
import platform
from typing import Any

from harness.report import rate_text

from scenarios.engine.results import GOAL_RATIO, Row


def _goal_text(row: Row) -> str:
    if row.smq is None:
        return "no smq"
    if not row.valid:
        return "INVALID"
    return "met" if row.goal_met else "NOT met"


def print_table(rows: list[Row], moto_client: str) -> None:
    """Render the side-by-side table with rich; mismatch details follow it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"smq vs moto ({moto_client}), in-memory executions/s", box=box.SIMPLE_HEAD)
    table.add_column("workflow", no_wrap=True)
    for column in ("smq exec/s", "smq trans/s", "moto exec/s", "moto n", "ratio"):
        table.add_column(column, justify="right", overflow="fold")
    table.add_column(f"goal >={GOAL_RATIO:g}x")
    for row in rows:
        smq_rate = None if row.smq is None else row.smq.timing.per_second
        ratio = row.ratio
        goal = _goal_text(row)
        table.add_row(
            row.workload.name,
            rate_text(smq_rate),
            rate_text(None if smq_rate is None else smq_rate * row.workload.states_entered),
            rate_text(row.moto.timing.per_second),
            str(row.moto.timing.executions),
            "n/a" if ratio is None else f"{ratio:,.0f}x",
            f"[green]{goal}[/]" if row.goal_met else f"[red]{goal}[/]",
        )
    Console().print(table)
    for row in rows:
        for result in (row.smq, row.moto):
            if result is not None and not result.verified.ok:
                print(f"{row.workload.name}: {result.verified.detail}")


def as_json(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Results plus enough context to compare runs from different machines."""
    from importlib.metadata import version

    return {
        "goal_ratio": GOAL_RATIO,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "moto": {"version": version("moto"), "client": args.moto_client},
        "settings": {
            "smq_seconds": args.seconds,
            "moto_seconds": args.moto_seconds,
            "moto_min_runs": args.moto_min_runs,
        },
        "results": [
            {
                "workflow": row.workload.name,
                "definition": f"bench/definitions/{row.workload.definition_file}",
                "states_entered_per_execution": row.workload.states_entered,
                "smq": None if row.smq is None else row.smq.as_dict(row.workload.states_entered),
                "moto": row.moto.as_dict(row.workload.states_entered),
                "ratio": None if row.ratio is None else round(row.ratio, 2),
                "goal_met": row.goal_met,
            }
            for row in rows
        ],
    }
