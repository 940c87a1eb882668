"""bench/faults.py's report: one row per fault (against the ``none`` baseline's row), the settings the
processes ran with, and the JSON document (--json, --save)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.report import console, fmt, load_line, simple_table

from scenarios.faults.catalogue import FAULTS, MID_BATCH, REDIS_EMPTIED


def settings_used(args: argparse.Namespace) -> dict[str, Any]:
    """What the processes ran with: the bench's sizes and smq's settings as the workers read them (no
    SMQ_* variable is set besides the servers and the handlers, so these are smq's defaults)."""
    from smq import Settings

    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    settings = Settings.from_env(env)
    return {
        "executions": args.executions,
        "workers": args.workers,
        "pool_processes_per_worker": args.concurrency,
        "wait_seconds": args.wait,
        "settle_seconds": args.settle,
        "mid_batch_at_finished_share": MID_BATCH,
        "SMQ_PARK_AFTER": settings.park_after,
        "SMQ_STRANDED_AFTER": settings.stranded_after,
        "SMQ_LEASE_SECONDS": settings.lease_seconds,
        "SMQ_VISIBILITY_TIMEOUT": settings.visibility_timeout,
        "SMQ_WAKE_GRACE": settings.wake_grace,
        "SMQ_MAX_RETRIES": settings.max_retries,
        "SMQ_RETRY_DELAYS": list(settings.retry_delays),
        "SMQ_OUTAGE_BUDGET": settings.outage_budget,
        "SMQ_SCHEDULER_INTERVAL": settings.scheduler_interval,
    }


def _seconds(value: float | None) -> str:
    return fmt(value, 1)


def redis_back_text(row: dict[str, Any]) -> str:
    if row["fault"] not in REDIS_EMPTIED:
        return ""
    return (
        f"{_seconds(row['after_redis_back_seconds'])} (requeued {_seconds(row['healed_after_redis_back_seconds'])}, "
        f"floor {_seconds(row['drain_floor_seconds'])})"
    )


def print_tables(report: dict[str, Any]) -> None:
    from rich import box

    out = console(200)
    table = simple_table(
        f"self-healing soak: {report['settings']['executions']:,} executions per fault",
        "fault", ("SUCCEEDED", "right"), ("stuck after 2 min", "right"), ("duplicate executions", "right"),
        ("completed Tasks run twice", "right"), ("dead letters", "right"), ("commands needed", "right"),
        ("all done (s)", "right"), ("after Redis back (s)", "right"), "goal", "notes",
        box=box.HEAVY_HEAD, title_justify="left",
    )  # fmt: skip
    for row in report["rows"]:
        dead = ", ".join(f"{reason} {n}" for reason, n in row["dead_letters"].items())
        table.add_row(
            FAULTS[row["fault"]],
            f"{row['succeeded']:,}/{row['expected']:,}",
            str(row["stuck"]),
            str(row["duplicates"]),
            str(row["completed_repeated"]),
            f"{row['dead_letters_total']}" + (f" ({dead})" if dead else ""),
            str(row["commands"]),
            _seconds(row["all_done_seconds"]),
            redis_back_text(row),
            "met" if not row["goal_missed"] else "MISSED: " + "; ".join(row["goal_missed"]),
            "; ".join(row["notes"] + ([row["error"]] if row["error"] else [])),
        )
    out.print(table)
    settings = ", ".join(f"{key}={value}" for key, value in report["settings"].items())
    out.print(f"settings: {settings}")
    out.print(
        "commands needed: 0 in every row by construction: the bench runs the workers, `smq scheduler` and "
        "`smq start` only, never a repair command (`smq recover`, `smq dead retry`, a re-run of `smq start`)."
    )
    out.print(f"{load_line(report)}; {'all goals met' if report['ok'] else 'GOAL MISSED'}")
