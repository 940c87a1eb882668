"""bench/distributed.py's report: the table (each part's figures, every pair's ratio, the goals) and the
JSON document (--json, --save)."""

from __future__ import annotations

import argparse
import itertools
import os
import platform
from typing import Any

from harness.figures import MIB
from harness.lifecycle import RunClock
from harness.report import console, fmt, load_line, simple_table, verdict

from scenarios.distributed.profile import profile_table
from scenarios.distributed.results import (
    GOAL_LEADER_OVER_PLAIN,
    GOAL_MEMORY_GROWTH_MB,
    GOAL_SMQ_OVER_BARE,
    Results,
    Throughput,
)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _mb(value: int | None) -> str:
    return fmt(value, 1, scale=1 / MIB, suffix=" MB")


def round_detail(run: Throughput) -> str:
    """One round's span, cost per task, publishing rate and (smq) commit figures and CPU breakdown."""
    detail = (
        f"{run.count:,} in {run.seconds:.2f}s; {run.worker_ms_per_item or 0:.2f} ms/task/worker; "
        f"published at {run.count / run.publish_seconds if run.publish_seconds else 0:,.0f}/s"
    )
    if run.mean_execution_ms is not None:
        detail += f"; execution start→stop {run.mean_execution_ms:.2f} ms"
    if run.commit_bound is not None:
        detail += (
            f"\n{run.writes_per_item} write transactions/execution, bare commit {run.commit_ms:.3f} ms "
            f"→ commit-bound {run.commit_bound:,.0f} exec/s on {run.workers} worker(s)"
        )
    if run.cpu is not None:
        shares = ", ".join(f"{name} {ms:.2f}" for name, ms in run.cpu.per_item_ms(run.count).items())
        detail += f"\nCPU ms per task (round {run.number}): {shares}"
    return detail


def add_throughput_rows(table: Any, results: Results) -> None:
    """Parts 1 and 2: each part's median rate with the median pair's round in detail, every pair's
    ratio, then the median paired ratio, which is what the goal judges."""
    median = results.median_pair
    for part, runs, shown, unit in (
        ("1", results.bare_rounds, results.bare, "tasks/s"),
        ("2", results.smq_rounds, results.smq, "exec/s"),
    ):
        if not runs or shown is None:
            continue
        rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
        which = "the median pair's" if median is not None else "the first"
        detail = f"rounds: {rates} {unit}\nround {shown.number}, {which}: {round_detail(shown)}"
        table.add_row(
            part, f"{runs[0].what}: median of {len(runs)} round(s)",
            f"{fmt(results.median_rate(runs))} {unit}", detail, "", verdict(all(run.ok for run in runs)),
        )  # fmt: skip
    for index, (bare, smq) in enumerate(results.pairs):
        detail = (
            f"bare {bare.rate:,.0f} tasks/s, smq {smq.rate:,.0f} exec/s; "
            f"load1 at start {bare.load1:.2f} / {smq.load1:.2f}"
        )
        if index == median:
            detail += " (the median pair)"
        if smq.profile:
            detail += " (smq round under py-spy)"
        table.add_row(
            "1-2", f"pair {index + 1}: smq / bare", fmt(results.pair_ratio(bare, smq), 3), detail, "",
            verdict(bare.ok and smq.ok),
        )  # fmt: skip
    if results.pairs:
        table.add_row(
            "1-2", f"smq / bare: median of {len(results.pairs)} paired ratio(s)", fmt(results.smq_ratio, 3),
            "", f">= {GOAL_SMQ_OVER_BARE}", verdict(results.throughput_ok, results.smq_goal_met),
        )  # fmt: skip
    add_insert_rows(table, results)


def add_insert_rows(table: Any, results: Results) -> None:
    """Part 2b (context, not judged): the one-INSERT task's rate, and smq and bare against it."""
    runs = results.insert_rounds
    if not runs:
        return
    shown = results.of_median_pair(runs)
    assert shown is not None
    rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
    table.add_row(
        "2b", f"{runs[0].what}: median of {len(runs)} round(s)", f"{fmt(results.median_rate(runs))} tasks/s",
        f"rounds: {rates} tasks/s\nround {shown.number}: {round_detail(shown)}", "context",
        verdict(all(run.ok for run in runs)),
    )  # fmt: skip
    table.add_row(
        "2b", "one-INSERT task / bare: median of round ratios", fmt(results.insert_over_bare, 3),
        "the most a design that writes once per task could reach against the no-op", "context", "",
    )  # fmt: skip
    table.add_row(
        "2b", "smq / one-INSERT task: median of round ratios", fmt(results.smq_over_insert, 3),
        "what smq keeps of a task that only records its outcome durably", "context", "",
    )  # fmt: skip


def report_table(results: Results, args: argparse.Namespace) -> Any:
    table = simple_table(
        f"Distributed execution: {args.workers} worker(s) x `-c {args.concurrency} --pool prefork`, "
        "Redis + PostgreSQL",
        "part", "measurement", ("figure", "right"), "detail", ("goal", "right"), "result",
    )  # fmt: skip
    add_throughput_rows(table, results)
    for runs in (results.leader, results.plain):
        best = results.best(runs)
        if best is None:
            continue
        rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
        detail = f"{best.messages:,} in {best.seconds:.2f}s; LLEN {best.queue_length:,}"
        if len(runs) > 1:
            detail += f"; rounds: {rates}/s (best shown)"
        table.add_row("3", best.what, f"{fmt(best.rate)} msg/s", detail, "", verdict(all(r.ok for r in runs)))
    if results.leader and results.plain:
        table.add_row(
            "3", "leader / plain", fmt(results.leader_ratio, 3), "", f">= {GOAL_LEADER_OVER_PLAIN}",
            verdict(results.publish_ok, results.leader_goal_met),
        )  # fmt: skip
    for memory in results.memory:
        table.add_row(
            "4", f"`smq leader` peak RSS, {memory.sources:,} sources", _mb(memory.peak_rss),
            f"VmHWM at exit (polled {_mb(memory.polled_peak_rss)}); {memory.seconds:.1f}s, "
            f"{memory.sources / memory.seconds if memory.seconds else 0:,.0f} sources/s",
            "", verdict(memory.ok),
        )  # fmt: skip
    if len(results.memory) >= 2:
        growth = results.memory_growth
        table.add_row(
            "4", "peak RSS growth", _mb(growth),
            f"{results.memory[0].sources:,} → {results.memory[-1].sources:,} sources",
            f"< {GOAL_MEMORY_GROWTH_MB:.0f} MB", verdict(all(r.ok for r in results.memory), results.memory_goal_met),
        )  # fmt: skip
    return table


def print_report(report: dict[str, Any], results: Results, args: argparse.Namespace) -> None:
    out = console(220)
    out.print(report_table(results, args))
    for smq in results.smq_rounds:
        if smq.profile:
            out.print(profile_table(smq.profile, smq.number))
            out.print(
                f"[yellow]part 2's round {smq.number} ran under py-spy: its figure and pair {smq.number}'s "
                "ratio are perturbed by the sampling[/]"
            )
    out.print(f"{load_line(report)}; all goals met: {report['all_goals_met']}")
    for throughput in results.bare_rounds + results.smq_rounds + results.insert_rounds:
        if throughput.detail:
            out.print(f"[red]{throughput.label}: {throughput.detail}[/]")
    for publish in results.leader + results.plain:
        if publish.detail:
            out.print(f"[red]{publish.what}: {publish.detail}[/]")
    for memory in results.memory:
        if memory.detail:
            out.print(f"[red]leader over {memory.sources:,} sources: {memory.detail}[/]")
    for error in results.errors:
        out.print(f"[red]error: {error}[/]")


def all_met(results: Results, args: argparse.Namespace) -> bool:
    if results.errors:
        return False
    checks = [results.smq_goal_met, results.leader_goal_met]
    if not args.skip_memory:
        checks.append(results.memory_goal_met)
    return all(checks)


def build_report(args: argparse.Namespace, results: Results, clock: RunClock) -> dict[str, Any]:
    import celery
    import kombu

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "cpus": os.cpu_count(),
        **clock.figures(),
        "settings": {
            "tasks": args.tasks,
            "pairs": args.pairs,
            "sources": args.sources,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "memory_sources": args.memory_sizes,
            "skip_memory": args.skip_memory,
            "task_events": args.task_events,
            "py_spy": bool(args.py_spy),
            "redis_db": args.redis_db,
            "staging_db": args.staging_db,
        },
        "goals": {
            "smq_over_bare": GOAL_SMQ_OVER_BARE,
            "leader_over_plain": GOAL_LEADER_OVER_PLAIN,
            "memory_growth_mb_below": GOAL_MEMORY_GROWTH_MB,
        },
        "bare": results.bare.as_dict() if results.bare else None,
        "smq": results.smq.as_dict() if results.smq else None,
        "smq_over_bare": None if results.smq_ratio is None else round(results.smq_ratio, 4),
        "smq_goal_met": results.smq_goal_met,
        "median_pair": None if results.median_pair is None else results.median_pair + 1,
        "bare_median_per_second": _rounded(results.median_rate(results.bare_rounds)),
        "smq_median_per_second": _rounded(results.median_rate(results.smq_rounds)),
        "insert_rounds": [run.as_dict() for run in results.insert_rounds],
        "insert_median_per_second": _rounded(results.median_rate(results.insert_rounds)),
        "insert_over_bare": _rounded(results.insert_over_bare, 4),
        "smq_over_insert": _rounded(results.smq_over_insert, 4),
        "pairs": [
            {
                "pair": index,
                "bare": bare.as_dict() if bare else None,
                "smq": smq.as_dict() if smq else None,
                "smq_over_bare": _rounded(results.pair_ratio(bare, smq), 4) if bare and smq else None,
                "insert": insert.as_dict() if insert else None,
            }
            for index, (bare, smq, insert) in enumerate(
                itertools.zip_longest(results.bare_rounds, results.smq_rounds, results.insert_rounds), start=1
            )
        ],
        "leader": [run.as_dict() for run in results.leader],
        "plain": [run.as_dict() for run in results.plain],
        "leader_over_plain": None if results.leader_ratio is None else round(results.leader_ratio, 4),
        "leader_goal_met": results.leader_goal_met,
        "leader_memory": [run.as_dict() for run in results.memory],
        "leader_memory_growth_bytes": results.memory_growth,
        "memory_goal_met": None if args.skip_memory else results.memory_goal_met,
        "errors": results.errors,
        "all_goals_met": all_met(results, args),
    }
