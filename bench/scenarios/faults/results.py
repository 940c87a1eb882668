"""One fault's row of the soak: what it counted (SUCCEEDED, stuck, duplicated, completed Tasks run
twice, dead letters, timings) and the goals it missed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from scenarios.faults.catalogue import BAD_MESSAGES, GOAL_AFTER_REDIS_BACK, REDIS_EMPTIED


@dataclass
class Row:
    fault: str
    executions: int
    expected: int = 0  # N, or for start-kill the names the killed `smq start` claimed
    succeeded: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    stuck: int = 0
    duplicates: int = 0
    completed_repeated: int = 0
    interrupted_rerun: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    commands: int = 0  # the bench runs no repair command
    all_done_seconds: float | None = None
    after_redis_back_seconds: float | None = None  # Redis answering again -> last execution ended
    healed_after_redis_back_seconds: float | None = None  # -> every unfinished name queued or started
    drain_floor_seconds: float | None = None  # the least time the work left at Redis's return needs
    fault_at_seconds: float | None = None  # from `smq start`
    fault_seconds: float | None = None  # how long the fault lasted
    never_claimed: int = 0
    died: list[str] = field(default_factory=list)  # processes the bench did not kill that exited
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    wall_seconds: float = 0.0

    @property
    def dead_total(self) -> int:
        return sum(self.dead_letters.values())

    def misses(self) -> list[str]:
        missed = []
        if self.error:
            missed.append("the run failed")
        if self.succeeded != self.expected or self.expected == 0:
            missed.append(f"{self.succeeded:,}/{self.expected:,} SUCCEEDED")
        if self.stuck:
            missed.append(f"{self.stuck} stuck")
        if self.duplicates:
            missed.append(f"{self.duplicates} duplicated")
        if self.completed_repeated:
            missed.append(f"{self.completed_repeated} completed Tasks repeated")
        if self.died:
            missed.append("died: " + ", ".join(self.died))
        if self.fault in REDIS_EMPTIED and not self.redis_goal_met():
            missed.append(f"not all done within {GOAL_AFTER_REDIS_BACK:.0f}s of Redis coming back")
        if self.fault == "bad-messages" and self.dead_total != BAD_MESSAGES:
            missed.append(f"{self.dead_total} dead letters, expected {BAD_MESSAGES}")
        return missed

    def redis_goal_met(self) -> bool:
        """Everything done within 60 s of Redis coming back. When the work left then cannot run in
        60 s even on every pool process at once (`drain_floor_seconds`), the goal is read as: every
        lost execution back in the broker within 60 s, and everything done within 60 s of that floor."""
        done, healed, floor = (
            self.after_redis_back_seconds,
            self.healed_after_redis_back_seconds,
            self.drain_floor_seconds or 0.0,
        )
        if done is None:
            return False
        if floor < GOAL_AFTER_REDIS_BACK:
            return done <= GOAL_AFTER_REDIS_BACK
        return (
            healed is not None and healed <= GOAL_AFTER_REDIS_BACK and done - floor <= GOAL_AFTER_REDIS_BACK
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dead_letters_total": self.dead_total, "goal_missed": self.misses()}
