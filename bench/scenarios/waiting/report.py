"""bench/waiting.py's report: the latency table (p50, p99 and max per part, against bare Celery), the
catch-up table, and the JSON document (--json, --save)."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

from harness.figures import Stats
from harness.lifecycle import RunClock
from harness.report import console, fmt, judged, load_line, simple_table, source_state, verdict

from scenarios.waiting.results import GOAL_ENQUEUE_LAG_SECONDS, Results
from scenarios.waiting.rig import MESSAGE_MACHINE
from scenarios.waiting.timers import Timers


def _ms(value: float | None) -> str:
    return fmt(value, 1, scale=1000)


def report_table(results: Results, args: argparse.Namespace, report: dict[str, Any]) -> Any:
    table = simple_table(
        f"Waiting: {args.workers} worker(s) x `-c 1 --pool prefork` + `smq scheduler` "
        f"(poll {report['settings'].get('scheduler_interval', '?')}s), Redis + PostgreSQL",
        "part", "latency", ("n", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("max ms", "right"),
        ("p50 / bare", "right"), ("p99 / bare", "right"), "result",
    )  # fmt: skip

    def row(part: str, label: str, stats: Stats, result: str = "", ratios: bool = True) -> None:
        table.add_row(
            part,
            label,
            f"{stats.count:,}",
            _ms(stats.p50),
            _ms(stats.p99),
            _ms(stats.max),
            fmt(results.ratio(stats, "p50"), 1, suffix="x") if ratios else "",
            fmt(results.ratio(stats, "p99"), 1, suffix="x") if ratios else "",
            result,
        )

    if results.bare:
        bare = results.bare
        row(
            "1",
            f"bare Celery: send_task → task starts ({bare.sent_rate:,.0f}/s)",
            bare.latency,
            verdict(bare.ok),
            ratios=False,
        )
    if results.timers:
        timers = results.timers
        goal = f"goal p99 <= {GOAL_ENQUEUE_LAG_SECONDS * 1000:,.0f} ms: " + judged(results.goal_met)
        where = f"{timers.count:,} due over {timers.spread:g}s"
        row("2", f"timer fired (wait resolved) − due; {where}", timers.fired)
        row("2", "timer continuation enqueued − due", timers.enqueued, goal)
        row("2", "timer continuation started (Wait done on a worker) − due", timers.started)
        row("2", "timer next state entered − due", timers.next_state, verdict(timers.ok))
    if results.catchup:
        catchup = results.catchup
        row(
            "3",
            f"catch-up: next state entered − due ({catchup.count:,} overdue by >= {catchup.downtime:g}s)",
            catchup.next_state,
            verdict(catchup.ok),
            ratios=False,
        )
    if results.messages:
        messages = results.messages
        row("4", f"send_message call (DB + enqueue; {messages.sent_rate:,.0f}/s)", messages.call)
        row("4", "send → continuation started (Message done on a worker)", messages.started)
        row("4", "send → next state entered", messages.next_state, verdict(messages.ok))
    return table


def catchup_table(catchup: Timers) -> Any:
    table = simple_table(
        f"Part 3, catch-up: scheduler down while {catchup.count:,} timers came due over "
        f"{catchup.spread:g}s, restarted {catchup.downtime:g}s after the last",
        "from the scheduler's spawn to",
        ("seconds", "right"),
        ("timers/s", "right"),
    )
    labels = (
        ("first_fired", "first timer fired"),
        ("last_fired", "last timer fired"),
        ("first_enqueued", "first continuation enqueued"),
        ("last_enqueued", "last continuation enqueued (the dispatcher has caught up)"),
        ("last_started", "last continuation started on a worker"),
        ("last_finished", "last execution SUCCEEDED (drained)"),
    )
    for key, label in labels:
        value = catchup.from_spawn.get(key)
        rate = (
            ""
            if value is None or not key.startswith("last") or value <= 0
            else f"{catchup.count / value:,.0f}"
        )
        table.add_row(label, "n/a" if value is None else f"{value:,.2f}", rate)
    return table


def print_report(report: dict[str, Any], results: Results, args: argparse.Namespace) -> None:
    out = console(200)
    out.print(report_table(results, args, report))
    if results.catchup and results.catchup.from_spawn:
        out.print(catchup_table(results.catchup))
    notes = []
    for part in (results.timers, results.catchup):
        if part is None:
            continue
        notes.append(
            f"{part.machine}: {part.count:,} parked in {part.create_seconds:.1f}s "
            f"({part.create_rate:,.0f}/s through the workers), {part.slack:.1f}s before the first due time; "
            f"{part.publishes:,} continuations published; CPU (% of one CPU) while they ran: "
            + ", ".join(f"{name} {value:.0f}" for name, value in part.cpu.items())
        )
    if results.messages:
        notes.append(
            f"{MESSAGE_MACHINE}: {results.messages.count:,} parked in {results.messages.create_seconds:.1f}s"
        )
    for note in notes:
        out.print(note)
    out.print(
        f"{load_line(report)}; verified: {report['verified']}; "
        f"goal (timer enqueue lag p99 <= {GOAL_ENQUEUE_LAG_SECONDS:g}s) met: {report['goal_met']}"
    )
    for measured in (results.bare, results.timers, results.catchup, results.messages):
        if measured is not None and measured.detail:
            out.print(f"[red]{type(measured).__name__.lower()}: {measured.detail}[/]")
    for error in results.errors:
        out.print(f"[red]error: {error}[/]")


def build_report(
    args: argparse.Namespace, results: Results, clock: RunClock, settings: dict[str, Any]
) -> dict[str, Any]:
    import celery

    ratios = {}
    for name, stats in (
        ("timer_enqueued", results.timers.enqueued if results.timers else None),
        ("timer_started", results.timers.started if results.timers else None),
        ("timer_next_state", results.timers.next_state if results.timers else None),
        ("message_next_state", results.messages.next_state if results.messages else None),
    ):
        if stats is not None:
            for which in ("p50", "p99"):
                value = results.ratio(stats, which)
                ratios[f"{name}_{which}_over_bare_{which}"] = None if value is None else round(value, 2)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "source": source_state(),
        **clock.figures(),
        "settings": {
            "workers": args.workers,
            "bare": args.bare,
            "bare_rate": args.bare_rate,
            "timers": args.timers,
            "spread": args.spread,
            "catchup": args.catchup,
            "catchup_spread": args.catchup_spread,
            "downtime": args.downtime,
            "messages": args.messages,
            "message_rate": args.message_rate,
            "warm_timers": args.warm_timers,
            "redis_db": args.redis_db,
            "record_db": args.record_db,
            **settings,
        },
        "warm_up_parked_per_second": round(results.warm_rate, 1),
        "bare": results.bare.as_dict() if results.bare else None,
        "timers": results.timers.as_dict() if results.timers else None,
        "catchup": results.catchup.as_dict() if results.catchup else None,
        "messages": results.messages.as_dict() if results.messages else None,
        "ratios": ratios,
        "goal": {"timer_enqueued_p99_seconds_at_most": GOAL_ENQUEUE_LAG_SECONDS},
        "goal_met": results.goal_met,
        "verified": results.verified,
        "errors": results.errors,
        "ok": results.verified and results.goal_met,
    }
