"""Part 3 of bench/waiting.py: catching up after scheduler downtime.

The scheduler is stopped, M more timers park and come due while it is down, and it is started again
some seconds after the last one was due; from its spawn: first and last timer fired, last
continuation enqueued and started, last execution finished. None may fire while it is down."""

from __future__ import annotations

import argparse
import time

from harness.progress import log

from scenarios.waiting.checks import finish_checks
from scenarios.waiting.rig import (
    CATCHUP_MACHINE,
    Rig,
    finished_count,
    park,
    wait_for,
)
from scenarios.waiting.timers import (
    LEAD_FACTOR,
    LEAD_MARGIN,
    Timers,
    timer_inputs,
    timers_meter,
    verify_timers,
)


def run_catchup(args: argparse.Namespace, rig: Rig, park_rate: float, park_after: float) -> Timers:
    result = Timers(CATCHUP_MACHINE, args.catchup, args.catchup_spread, downtime=args.downtime)
    repo, scheduler = rig.repo, rig.scheduler
    log("catch-up: stopping the scheduler")
    scheduler.stop()
    stopped = time.time()
    result.lead = args.catchup / park_rate * LEAD_FACTOR + park_after + LEAD_MARGIN
    first_due = time.time() + result.lead
    inputs = timer_inputs("c", args.catchup, first_due, args.catchup_spread)
    log(f"catch-up: parking {args.catchup:,} executions while the scheduler is down")
    result.create_seconds = park(  # only the workers: the scheduler is down
        rig.client, repo, CATCHUP_MACHINE, inputs, rig.workers.check_alive, "catch-up parked"
    )
    result.slack = first_due - time.time()
    restart = first_due + args.catchup_spread + args.downtime
    log(f"  parked; restarting the scheduler in {restart - time.time():.0f}s")
    time.sleep(max(0.0, restart - time.time()))
    spawned = scheduler.start()
    meter = timers_meter(rig)
    meter.start()
    wait_for(
        lambda: finished_count(repo, CATCHUP_MACHINE), args.catchup, "catch-up finished", rig.alive, poll=0.5
    )
    result.cpu = meter.stop().percent_of_one_cpu()
    time.sleep(0.5)
    extremes = verify_timers(repo, result, scheduler.published(), first_due, (stopped, spawned))
    result.from_spawn = {key: value - spawned for key, value in extremes.items()}
    finish_checks(result, repo, rig.broker)
    return result
