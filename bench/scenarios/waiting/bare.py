"""Part 1 of bench/waiting.py, the baseline: bare Celery enqueue-to-start.

N ``smq_bench.latency`` tasks are sent at a steady rate (paced, so it measures latency, not a
backlog), each carrying its send time; the task records (sent, started) first thing. The timer and
message latencies of parts 2 and 4 are reported as multiples of these p50 and p99."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.figures import Stats
from harness.queues import QUEUE

from scenarios.waiting.checks import queue_leftovers
from scenarios.waiting.rig import LATENCY_TASK, Rig, wait_for


@dataclass
class Bare:
    count: int
    rate: float
    sent_rate: float = 0.0
    latency: Stats = field(default_factory=Stats)
    ok: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.count,
            "target_rate": self.rate,
            "sent_per_second": round(self.sent_rate, 1),
            "enqueue_to_start": self.latency.as_dict(),
            "verified": self.ok,
            "detail": self.detail,
        }


def send_paced(count: int, rate: float, send: Callable[[int], None]) -> float:
    """Call send(i) for i < count at `rate` per second (absolute schedule, no drift); the achieved rate."""
    start = time.perf_counter()
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(index)
    elapsed = time.perf_counter() - start
    return (count - 1) / elapsed if count > 1 and elapsed > 0 else 0.0


def run_bare(rig: Rig, count: int, rate: float) -> Bare:
    result = Bare(count, rate)
    key = "bare:latency"

    def send(_index: int) -> None:
        rig.app.send_task(LATENCY_TASK, args=(key, time.time()), queue=QUEUE)

    result.sent_rate = send_paced(count, rate, send)
    wait_for(lambda: int(rig.records.llen(key)), count, "bare", rig.alive, poll=0.1)
    time.sleep(0.5)
    samples = [tuple(map(float, raw.split())) for raw in rig.records.lrange(key, 0, -1)]
    result.latency = Stats.of([started - sent for sent, started in samples])
    problems = [] if len(samples) == count else [f"{len(samples)} samples, expected {count}"]
    problems += queue_leftovers(rig.broker)
    result.ok, result.detail = not problems, "; ".join(problems)
    return result
