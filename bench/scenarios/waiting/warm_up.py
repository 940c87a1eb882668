"""bench/waiting.py's warm-up (not timed): bare tasks, timers that park and fire, messages that resume,
every code path once in every pool child. It also measures how fast the workers park executions,
which sets part 2's lead time."""

from __future__ import annotations

import argparse
import time

from harness.progress import log
from harness.queues import QUEUE

from scenarios.waiting.messages import run_messages
from scenarios.waiting.rig import (
    LATENCY_TASK,
    WARM_MESSAGE_MACHINE,
    WARM_TIMER_MACHINE,
    Rig,
    finished_count,
    park,
    status_counts,
    wait_for,
)
from scenarios.waiting.timers import timer_inputs


def warm_up(rig: Rig, args: argparse.Namespace, park_after: float) -> float:
    """Bare tasks, timers that park and fire, messages that resume: every code path once in every pool
    child, untimed. Returns the rate at which the timer warm-up parked executions (per second)."""
    repo, alive = rig.repo, rig.alive
    count = 20 * len(rig.workers.names)
    for _ in range(count):
        rig.app.send_task(LATENCY_TASK, args=("warm:latency", time.time()), queue=QUEUE)
    wait_for(lambda: int(rig.records.llen("warm:latency")), count, "warm-up bare", alive, poll=0.1)
    # Due far enough ahead to park even if parking ran at only 20 per second.
    lead = park_after + 3 + args.warm_timers / 20
    inputs = timer_inputs("w", args.warm_timers, time.time() + lead, 1.0)
    seconds = park(rig.client, repo, WARM_TIMER_MACHINE, inputs, alive, "warm-up timers parked")
    rate = args.warm_timers / seconds
    log(f"  warm-up: {args.warm_timers} timers parked at {rate:,.0f}/s; waiting for them to fire")
    wait_for(
        lambda: finished_count(repo, WARM_TIMER_MACHINE),
        args.warm_timers,
        "warm-up timers finished",
        alive,
        quiet_until=time.time() + lead + 1,
    )
    if status_counts(repo, WARM_TIMER_MACHINE) != {"SUCCEEDED": args.warm_timers}:
        raise RuntimeError(f"warm-up timers: {status_counts(repo, WARM_TIMER_MACHINE)}")
    warm = run_messages(args, rig, machine=WARM_MESSAGE_MACHINE, count=5 * len(rig.workers.names), rate=20.0)
    if not warm.ok:
        raise RuntimeError(f"warm-up messages: {warm.detail}")
    return rate
