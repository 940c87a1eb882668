"""The common parts of a benchmark's report: figures as text, verdicts, rich tables in one style, load
averages, which smq was measured, and the JSON report written (--save), printed (--json) or shown as
tables."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from harness.paths import ROOT


def rate_text(rate: float | None) -> str:
    """A rate for a table: whole numbers from 100 up, two decimals below, "n/a" for none."""
    if rate is None:
        return "n/a"
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.2f}"


def fmt(value: float | None, digits: int = 0, *, scale: float = 1.0, suffix: str = "") -> str:
    """A figure for a table: `value` times `scale`, thousands grouped, `digits` decimals, then `suffix`;
    "n/a" for none."""
    return "n/a" if value is None else f"{value * scale:,.{digits}f}{suffix}"


def judged(met: bool, yes: str = "met", no: str = "NOT met") -> str:
    """A goal's verdict, green or red."""
    return f"[green]{yes}[/]" if met else f"[red]{no}[/]"


def verdict(ok: bool, met: bool | None = None) -> str:
    """A result column: FAILED verification; else verified, or, where a goal is judged, met / NOT met."""
    if not ok:
        return "[red]FAILED verification[/]"
    if met is None:
        return "[green]verified[/]"
    return judged(met)


def simple_table(title: str, *columns: Any, **options: Any) -> Any:
    """A rich Table in the benchmarks' style (a rule under the header, unless `options` say otherwise).
    Each column is a name (left-justified), a (name, justify) pair, or a rich Column."""
    from rich import box
    from rich.table import Column, Table

    options.setdefault("box", box.SIMPLE_HEAD)
    headers = []
    for column in columns:
        if isinstance(column, str):
            column = Column(column)
        elif isinstance(column, tuple):
            column = Column(column[0], justify=column[1])
        headers.append(column)
    return Table(*headers, title=title, **options)


def load_average(load_start: Sequence[float]) -> dict[str, list[float]]:
    """The 1/5/15-minute load averages at the start (given) and now, for a JSON report."""
    return {
        "start": [round(v, 2) for v in load_start],
        "end": [round(v, 2) for v in os.getloadavg()],
    }


def load_line(report: dict[str, Any]) -> str:
    """The start of a report's closing line: load averages, CPUs and total time."""
    load = report["load_average"]
    return (
        f"load average (1/5/15 min) at start {load['start']}, at end {load['end']} on {report['cpus']} CPUs; "
        f"total {report['wall_seconds']:.0f}s"
    )


def source_state() -> dict[str, Any]:
    """Which smq was measured: HEAD and whether smq/ had uncommitted changes."""

    def git(*command: str) -> str:
        try:
            return subprocess.run(
                ["git", *command], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "smq").splitlines()]
    return {"head": git("rev-parse", "HEAD"), "smq_uncommitted": changed}


def console(width: int) -> Any:
    """A rich Console: the terminal's width on a terminal, `width` columns otherwise (a pipe, a file)."""
    from rich.console import Console

    terminal = Console()
    return terminal if terminal.is_terminal else Console(width=width)


def emit_report(
    report: dict[str, Any], save: str | None, as_json: bool, print_tables: Callable[[], None]
) -> None:
    """Write the JSON report to `save` if given; then print it as JSON, or call `print_tables`."""
    if save:
        with open(save, "w") as out:
            json.dump(report, out, indent=2)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_tables()
