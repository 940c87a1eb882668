"""What bench/waiting.py measured, part by part, its goal (timer continuations enqueued within a second
of their due time, p99) and the ratios against part 1's bare Celery latency."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.figures import Stats, ratio

from scenarios.waiting.bare import Bare
from scenarios.waiting.messages import Messages
from scenarios.waiting.timers import Timers

GOAL_ENQUEUE_LAG_SECONDS = 1.0


@dataclass
class Results:
    bare: Bare | None = None
    timers: Timers | None = None
    catchup: Timers | None = None
    messages: Messages | None = None
    warm_rate: float = 0.0  # executions parked per second during the warm-up
    errors: list[str] = field(default_factory=list)

    @property
    def goal_met(self) -> bool:
        p99 = self.timers.enqueued.p99 if self.timers else None
        return p99 is not None and p99 <= GOAL_ENQUEUE_LAG_SECONDS

    @property
    def verified(self) -> bool:
        parts = [self.bare, self.timers, self.catchup, self.messages]
        return not self.errors and all(part is not None and part.ok for part in parts)

    def ratio(self, stats: Stats, which: str) -> float | None:
        if self.bare is None:
            return None
        return ratio(getattr(stats, which), getattr(self.bare.latency, which))
