"""bench/persistence.py's report: the persisted-vs-in-memory table, the streaming table, and the JSON
document (--json, --save)."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

from harness.figures import MIB
from harness.lifecycle import RunClock
from harness.report import console, judged, load_line, rate_text, simple_table

from scenarios.persistence.streaming import StreamResult
from scenarios.persistence.throughput import GOALS, Cell


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:+.2f}" if value < 0 else f"{value / MIB:.2f}"


def throughput_table(cells: list[Cell]) -> Any:
    """Persisted vs in-memory rates, one row per backend and workload."""
    from rich.table import Column

    threads = max((cell.threads for cell in cells), default=0)
    mode = os.environ.get("SMQ_CHECKPOINTS") or "boundaries"
    columns = (
        "states/exec", "seq exec/s", "seq trans/s", f"{threads} thr exec/s", f"{threads} thr trans/s",
        "in-mem trans/s", "seq/mem", "writes/exec", "commit ms", "seq commit-bound trans/s", "goal trans/s",
    )  # fmt: skip
    table = simple_table(
        f"Persisted vs in-memory, one process, SMQ_CHECKPOINTS={mode}",
        "backend",
        "workflow",
        *((column, "right") for column in columns),
        Column("goal (on the better)", no_wrap=True),
        ("load1", "right"),
    )
    for cell in cells:
        ratio, bound = cell.ratio, cell.commit_bound
        judged_on = "seq" if cell.best[0] == "sequential" else f"{cell.threads} thr"
        table.add_row(
            cell.backend,
            cell.workload.name,
            str(cell.workload.states_entered),
            rate_text(cell.persisted.executions_per_second),
            rate_text(cell.persisted.transitions_per_second),
            rate_text(cell.concurrent.executions_per_second) if cell.threads else "n/a",
            rate_text(cell.concurrent.transitions_per_second) if cell.threads else "n/a",
            rate_text(cell.memory.transitions_per_second),
            "n/a" if ratio is None else f"{ratio:.2%}",
            str(cell.writes_per_execution),
            f"{cell.commit_ms:.3f}",
            "n/a" if bound is None else rate_text(bound),
            f">={cell.goal:,.0f}",
            f"{judged(cell.goal_met)} ({judged_on})" if cell.ok else "[red]INVALID[/]",
            f"{cell.load1:.2f}",
        )
    return table


def _stream_verdicts(stream: StreamResult) -> list[str]:
    """Flat / complete / ordered, for the first row of a backend."""
    return [
        _mb(stream.python_growth),
        _mb(stream.rss_growth),
        judged(stream.flat, "flat", "NOT flat"),
        judged(stream.complete, "yes", "NO"),
        judged(stream.ordered, "yes", "NO"),
    ]


def stream_table(streams: list[StreamResult]) -> Any:
    """Load and streaming rates, memory at each sample, and the flat/complete/ordered verdicts."""
    columns = (
        "rows", "load rows/s", "stream rows/s", "sample", "at s", "segment rows/s", "RSS MB",
        "py cur MB", "py peak MB", "py growth MB", "RSS growth MB", "memory", "count ok", "order ok",
    )  # fmt: skip
    table = simple_table(
        "Keyset streaming (stream_executions)", "backend", *((column, "right") for column in columns)
    )
    for stream in streams:
        load_rate = stream.expected / stream.load_seconds if stream.load_seconds else 0.0
        traced = {sample.fraction: sample for sample in stream.traced.samples}
        rates = stream.timed.segment_rates()
        for index, sample in enumerate(stream.timed.samples):
            first = index == 0
            python = traced.get(sample.fraction)
            table.add_row(
                stream.backend if first else "",
                f"{stream.expected:,}" if first else "",
                rate_text(load_rate) if first else "",
                rate_text(stream.timed.rows_per_second) if first else "",
                f"{sample.fraction:.0%}",
                f"{sample.seconds:.1f}",
                rate_text(rates[index]),
                _mb(sample.rss),
                "n/a" if python is None else _mb(python.python_current),
                "n/a" if python is None else _mb(python.python_peak),
                *(_stream_verdicts(stream) if first else [""] * 5),
            )
    return table


def print_report(report: dict[str, Any], cells: list[Cell], streams: list[StreamResult]) -> None:
    """Both tables with rich, then the context and any verification failures."""
    out = console(220)
    if cells:
        out.print(throughput_table(cells))
    if streams:
        out.print(stream_table(streams))
        out.print(
            "stream rows/s and RSS come from an untraced pass; py cur/peak (tracemalloc) from a second, "
            "traced pass over the same rows. Growth is the 100% sample minus the 10% sample."
        )
    out.print(f"{load_line(report)}; all goals met: {report['all_goals_met']}")
    for cell in cells:
        if cell.detail:
            out.print(f"[red]{cell.backend}/{cell.workload.name}: {cell.detail}[/]")
    for stream in streams:
        for one in (stream.timed, stream.traced):
            if one.first_disorder:
                out.print(f"[red]{stream.backend}: first out-of-order row: {one.first_disorder}[/]")


def build_report(
    args: argparse.Namespace, cells: list[Cell], streams: list[StreamResult], clock: RunClock
) -> dict[str, Any]:
    """Results plus enough context to compare runs from different machines."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **clock.figures(),
        "settings": {
            "seconds": args.seconds,
            "threads": args.threads,
            "checkpoints": args.checkpoints,
            "stream_rows": args.stream_rows,
            "page_size": args.page_size,
            "flat_mb": args.flat_mb,
            "backends": args.backends,
        },
        "goals_transitions_per_second": GOALS,
        "throughput": [cell.as_dict() for cell in cells],
        "streaming": [stream.as_dict() for stream in streams],
        "all_goals_met": all_met(cells, streams),
    }


def all_met(cells: list[Cell], streams: list[StreamResult]) -> bool:
    return all(cell.goal_met for cell in cells) and all(stream.goal_met for stream in streams)
