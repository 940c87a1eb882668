"""Part 2 of bench/waiting.py: durable-timer dispatch lag, against the due time (and, in the table,
against part 1's bare Celery latency).

N executions park on a ``Wait`` whose due times are spread over a window that starts once every one
has parked; per execution, against its due time: the timer fired (wait resolved), its continuation
enqueued (what the dispatcher controls: the goal is p99 <= 1 s), started on a worker, and the next
state entered. Part 3 (catchup) verifies its timers the same way."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from harness.cpu import CpuMeter
from harness.database import postgres_pids
from harness.figures import Stats
from harness.progress import log
from sqlalchemy import text

from scenarios.waiting.checks import HISTORY_ROWS, Problems, check_resumed_once, finish_checks
from scenarios.waiting.rig import (
    TIMER_MACHINE,
    TIMER_STATES,
    Rig,
    epoch,
    finished_count,
    park,
    timestamp,
    wait_for,
)

LEAD_FACTOR = 1.3  # part 2's lead time: measured parking rate, with this much headroom
LEAD_MARGIN = 5.0  # ... plus SMQ_PARK_AFTER plus this many seconds


@dataclass
class Timers:
    """Part 2 (or 3): N parked timers, their lags behind their due times."""

    machine: str
    count: int
    spread: float
    lead: float = 0.0  # from the start of creation to the first due time
    create_seconds: float = 0.0  # enqueue start -> every execution WAITING
    slack: float = 0.0  # every execution WAITING -> the first due time
    fired: Stats = field(default_factory=Stats)
    enqueued: Stats = field(default_factory=Stats)
    started: Stats = field(default_factory=Stats)
    next_state: Stats = field(default_factory=Stats)
    finished: Stats = field(default_factory=Stats)
    publishes: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one CPU while the timers fired
    # part 3 only: seconds from the scheduler's spawn
    downtime: float = 0.0
    from_spawn: dict[str, float] = field(default_factory=dict)
    ok: bool = False
    detail: str = ""

    @property
    def create_rate(self) -> float:
        return self.count / self.create_seconds if self.create_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state_machine_id": self.machine,
            "timers": self.count,
            "spread_seconds": self.spread,
            "lead_seconds": round(self.lead, 2),
            "create_seconds": round(self.create_seconds, 2),
            "parked_per_second": round(self.create_rate, 1),
            "slack_seconds": round(self.slack, 2),
            "fired_minus_due": self.fired.as_dict(),
            "enqueued_minus_due": self.enqueued.as_dict(),
            "started_minus_due": self.started.as_dict(),
            "next_state_minus_due": self.next_state.as_dict(),
            "finished_minus_due": self.finished.as_dict(),
            "continuations_published": self.publishes,
            "cpu_percent_of_one_cpu": {name: round(value, 1) for name, value in self.cpu.items()},
            "downtime_after_last_due_seconds": self.downtime or None,
            "seconds_from_scheduler_spawn": {k: round(v, 3) for k, v in self.from_spawn.items()} or None,
            "verified": self.ok,
            "detail": self.detail,
        }


TIMER_ROWS = (
    """
SELECT e.id, e.name, e.status, e.input, e.stop_time,
       w.n AS waits, w.due_at, w.resolved_at, w.parked_at, w.resolutions,
       h.n AS rows, h.wait_n, h.next_n, h.wait_exit, h.next_enter, h.all_succeeded
FROM smq_executions e
LEFT JOIN LATERAL (
    SELECT count(*) AS n, min(due_at) AS due_at, min(resolved_at) AS resolved_at, max(created_at) AS parked_at,
           string_agg(kind || ':' || status || ':' || coalesce(resolution, ''), ',') AS resolutions
    FROM smq_waits WHERE execution_id = e.id
) w ON true
"""
    + HISTORY_ROWS
)


def timer_inputs(
    prefix: str, count: int, first_due: float, spread: float
) -> list[tuple[str, dict[str, Any]]]:
    step = spread / count if count else 0.0
    return [(f"{prefix}-{i:06d}", {"due": timestamp(first_due + i * step), "i": i}) for i in range(count)]


def verify_timers(
    repo: Any,
    result: Timers,
    published: dict[tuple[str, str], list[float]],
    first_due: float,
    scheduler_down: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Fill result's lags and verdict; returns the extremes (wall times) for part 3. Every execution must
    have parked before `first_due` (creating them must not overlap the timers firing), and none may
    have fired while the scheduler was down (`scheduler_down`, wall times)."""
    problems = Problems()
    with repo.reader.connect() as connection:
        rows = list(
            connection.execute(
                text(TIMER_ROWS),
                {"sm": result.machine, "wait_state": TIMER_STATES[0], "next_state": TIMER_STATES[1]},
            )
        )
    if len(rows) != result.count:
        problems.add("executions found", f"{len(rows)}, expected {result.count}")
    fired: list[float] = []
    enqueued: list[float] = []
    started: list[float] = []
    next_state: list[float] = []
    finished: list[float] = []
    extremes: dict[str, list[float]] = {key: [] for key in ("fired", "enqueued", "started", "finished")}
    publishes = 0
    for row in rows:
        due = epoch(row.input.get("due")) if isinstance(row.input, dict) else None
        times = published.get((result.machine, row.name), [])
        publishes += len(times)
        check_resumed_once(problems, row, "timer", TIMER_STATES)
        if len(times) != 1:
            problems.add("continuation not published exactly once", f"{row.name}: {len(times)}")
        if due is None:
            problems.add("no due time in the input", row.name)
            continue
        due_at, parked_at, resolved_at = epoch(row.due_at), epoch(row.parked_at), epoch(row.resolved_at)
        if due_at is not None and abs(due_at - due) > 0.001:
            problems.add("timer due at another time than asked", f"{row.name}: {row.due_at}")
        if parked_at is None or parked_at >= first_due:
            problems.add(
                "not parked before the first due time (creation overlapped the timers: see --timer-lead)",
                row.name,
            )
        if (
            scheduler_down
            and resolved_at is not None
            and scheduler_down[0] <= resolved_at < scheduler_down[1]
        ):
            problems.add("fired while the scheduler was down", row.name)
        values = {
            "fired": resolved_at,
            "enqueued": min(times) if times else None,
            "started": epoch(row.wait_exit),
            "next": epoch(row.next_enter),
            "finished": epoch(row.stop_time),
        }
        for kind, lags in (
            ("fired", fired),
            ("enqueued", enqueued),
            ("started", started),
            ("next", next_state),
            ("finished", finished),
        ):
            moment = values[kind]
            if moment is None:
                continue
            lags.append(moment - due)
            if kind in extremes:
                extremes[kind].append(moment)
        for kind in ("fired", "started"):
            moment = values[kind]
            if moment is not None and moment < due:
                problems.add(f"{kind} before its due time", f"{row.name}: {moment - due:+.3f}s")
    result.fired, result.enqueued, result.started = Stats.of(fired), Stats.of(enqueued), Stats.of(started)
    result.next_state, result.finished = Stats.of(next_state), Stats.of(finished)
    result.publishes = publishes
    result.detail = problems.text()
    result.ok = not problems.counts
    summary: dict[str, float] = {}
    for kind, moments in extremes.items():
        if moments:
            summary[f"first_{kind}"], summary[f"last_{kind}"] = min(moments), max(moments)
    return summary


def run_timers(args: argparse.Namespace, rig: Rig, park_rate: float, park_after: float) -> Timers:
    result = Timers(TIMER_MACHINE, args.timers, args.spread)
    result.lead = args.timer_lead or (args.timers / park_rate * LEAD_FACTOR + park_after + LEAD_MARGIN)
    repo = rig.repo

    begin = time.time()
    first_due = begin + result.lead
    inputs = timer_inputs("t", args.timers, first_due, args.spread)
    log(
        f"timers: parking {args.timers:,} executions, due over {args.spread:g}s from "
        f"{timestamp(first_due)} (lead {result.lead:.0f}s)"
    )
    result.create_seconds = park(rig.client, repo, TIMER_MACHINE, inputs, rig.alive, "timers parked")
    parked_at = time.time()
    result.slack = first_due - parked_at
    log(
        f"  parked in {result.create_seconds:.1f}s ({result.create_rate:,.0f}/s); "
        f"{result.slack:.1f}s before the first due time"
    )
    if parked_at < first_due - 1:
        time.sleep(first_due - parked_at - 1)
    meter = timers_meter(rig)
    meter.start()
    wait_for(
        lambda: finished_count(repo, TIMER_MACHINE),
        args.timers,
        "timers finished",
        rig.alive,
        poll=1.0,
        quiet_until=first_due + args.spread,
    )
    result.cpu = meter.stop().percent_of_one_cpu()
    time.sleep(0.5)
    verify_timers(repo, result, rig.scheduler.published(), first_due)
    finish_checks(result, repo, rig.broker)
    return result


def timers_meter(rig: Rig) -> CpuMeter:
    """CPU of the scheduler, the workers (main + pool) and the PostgreSQL backends while timers fire."""
    return CpuMeter(
        {
            "scheduler": rig.scheduler.pids,
            "workers (main + pool)": rig.workers.pids,
            "postgres": postgres_pids(rig.repo),
        }
    )
