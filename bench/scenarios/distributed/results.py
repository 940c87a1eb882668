"""What bench/distributed.py measured, part by part, and its goals: the rounds of parts 1, 2 and 2b
paired by number (the median paired ratio is judged), part 3's publishing runs (the best kept), part
4's leader memory runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from harness.cpu import CpuUsage
from harness.figures import MIB, median_ratio, ratio

GOAL_SMQ_OVER_BARE = 0.5
GOAL_LEADER_OVER_PLAIN = 0.8
GOAL_MEMORY_GROWTH_MB = 50.0


@dataclass
class Throughput:
    """Part 1 or 2: N tasks or executions released at once, first to last, on K workers."""

    what: str
    count: int
    workers: int
    number: int = 1  # the round (= the pair) it belongs to, from 1
    seconds: float = 0.0  # first completion (bare) / first start (smq) to the last completion / stop
    intervals: int = 0  # completions that the span covers: N - 1 (bare, first to last) or N (smq)
    publish_seconds: float = 0.0  # sending the N messages to the staging db (not part of the span)
    mean_execution_ms: float | None = None  # smq: mean stop_time - start_time of one execution
    writes_per_item: int | None = None  # smq: write transactions per execution (SMQ_CHECKPOINTS mode)
    commit_ms: float | None = None  # smq: a bare one-row autocommit INSERT on the bench database, just before
    cpu: CpuUsage | None = None  # from the release of the backlog until it was seen drained
    profile: dict[str, Any] | None = None  # py-spy summary of the pool children (--py-spy)
    ok: bool = False
    detail: str = ""
    load1: float = 0.0

    @property
    def rate(self) -> float:
        return self.intervals / self.seconds if self.seconds > 0 else 0.0

    @property
    def label(self) -> str:
        return f"{self.what}, round {self.number}"

    @property
    def commit_bound(self) -> float | None:
        """Executions/s if each of the K workers did nothing but its commits, back to back."""
        if not self.commit_ms or not self.writes_per_item:
            return None
        return self.workers * 1000 / (self.commit_ms * self.writes_per_item)

    @property
    def worker_ms_per_item(self) -> float | None:
        """Wall time one worker spends per task (K / rate): what each task costs a worker, all in."""
        return self.workers / self.rate * 1000 if self.rate else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "round": self.number,
            "count": self.count,
            "workers": self.workers,
            "seconds": round(self.seconds, 4),
            "per_second": round(self.rate, 1),
            "worker_ms_per_item": None
            if self.worker_ms_per_item is None
            else round(self.worker_ms_per_item, 3),
            "mean_execution_ms": None if self.mean_execution_ms is None else round(self.mean_execution_ms, 3),
            "writes_per_execution": self.writes_per_item,
            "commit_ms": None if self.commit_ms is None else round(self.commit_ms, 4),
            "commit_bound_per_second": None if self.commit_bound is None else round(self.commit_bound, 1),
            "publish_seconds": round(self.publish_seconds, 3),
            "publish_per_second": round(self.count / self.publish_seconds, 1)
            if self.publish_seconds
            else None,
            "cpu_seconds": None if self.cpu is None else self.cpu.as_dict(),
            "cpu_ms_per_item": None if self.cpu is None else self.cpu.per_item_ms(self.count),
            "py_spy": self.profile,
            "verified": self.ok,
            "detail": self.detail,
            "load1_at_start": self.load1,
        }


@dataclass
class Publish:
    """Part 3: one producer publishing M messages, timed, then the queue length checked."""

    what: str
    messages: int
    seconds: float = 0.0
    queue_length: int = 0
    ok: bool = False
    detail: str = ""
    load1: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "messages": self.messages,
            "seconds": round(self.seconds, 4),
            "per_second": round(self.rate, 1),
            "queue_length": self.queue_length,
            "verified": self.ok,
            "detail": self.detail,
            "load1_at_start": self.load1,
        }


@dataclass
class LeaderMemory:
    """Part 4: one `smq leader` subprocess over `sources` sources."""

    sources: int
    peak_rss: int = 0  # VmHWM reported by the child at exit
    polled_peak_rss: int = 0  # the largest VmHWM seen by polling from outside
    seconds: float = 0.0
    enqueued: int = 0
    queue_length: int = 0
    exit_code: int | None = None
    ok: bool = False
    detail: str = ""
    load1: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "peak_rss_bytes": self.peak_rss,
            "polled_peak_rss_bytes": self.polled_peak_rss,
            "seconds": round(self.seconds, 3),
            "enqueued": self.enqueued,
            "queue_length": self.queue_length,
            "exit_code": self.exit_code,
            "verified": self.ok,
            "detail": self.detail,
            "load1_at_start": self.load1,
        }


@dataclass
class Results:
    bare_rounds: list[Throughput] = field(default_factory=list)  # part 1, round i at index i - 1
    smq_rounds: list[Throughput] = field(default_factory=list)  # part 2, round i at index i - 1
    insert_rounds: list[Throughput] = field(default_factory=list)  # part 2b (context), round i at i - 1
    leader: list[Publish] = field(default_factory=list)
    plain: list[Publish] = field(default_factory=list)
    memory: list[LeaderMemory] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    # ---- part 2 vs part 1, pair by pair (bare round i, then smq round i)
    @property
    def pairs(self) -> list[tuple[Throughput, Throughput]]:
        """The complete pairs (a run aborted between the two rounds of a pair leaves it out)."""
        return list(zip(self.bare_rounds, self.smq_rounds, strict=False))

    @staticmethod
    def pair_ratio(bare: Throughput, smq: Throughput) -> float | None:
        return ratio(smq.rate, bare.rate)

    def _ratios(self) -> list[tuple[float, int]]:
        """(smq_i / bare_i, i - 1) for every complete pair with a bare rate, lowest ratio first."""
        ratios = [(self.pair_ratio(bare, smq), index) for index, (bare, smq) in enumerate(self.pairs)]
        return sorted((ratio, index) for ratio, index in ratios if ratio is not None)

    @property
    def smq_ratio(self) -> float | None:
        """The median of the paired ratios: drift of the machine's speed between pairs cancels out
        of each ratio, and one pair caught by a burst of other work cannot move the median."""
        return _median_ratio(self.smq_rounds, self.bare_rounds)

    @property
    def median_pair(self) -> int | None:
        """Index of the pair whose ratio is the median (the lower middle one for an even count)."""
        ratios = self._ratios()
        return ratios[(len(ratios) - 1) // 2][1] if ratios else None

    def of_median_pair(self, runs: list[Throughput]) -> Throughput | None:
        """The round of `runs` (one part's rounds, round i at index i - 1) that belongs to the median
        pair; the first round if no pair has a ratio (or that part never reached the median pair)."""
        index = self.median_pair
        if index is not None and index < len(runs):
            return runs[index]
        return runs[0] if runs else None

    @property
    def bare(self) -> Throughput | None:
        """Part 1's round of the median pair."""
        return self.of_median_pair(self.bare_rounds)

    @property
    def smq(self) -> Throughput | None:
        """Part 2's round of the median pair."""
        return self.of_median_pair(self.smq_rounds)

    @staticmethod
    def median_rate(runs: list[Throughput]) -> float | None:
        return statistics.median(run.rate for run in runs) if runs else None

    @property
    def throughput_ok(self) -> bool:
        """At least one complete pair, and every round of either part verified."""
        return bool(self.pairs) and all(run.ok for run in self.bare_rounds + self.smq_rounds)

    @property
    def smq_goal_met(self) -> bool:
        ratio = self.smq_ratio
        return self.throughput_ok and ratio is not None and ratio >= GOAL_SMQ_OVER_BARE

    # ---- part 2b (context): smq against a task that does one durable write, and that task against bare
    @property
    def smq_over_insert(self) -> float | None:
        """Median over the rounds of smq_i / insert_i (run back to back): what smq costs beyond the one
        durable PostgreSQL write any task that records its outcome must make."""
        return _median_ratio(self.smq_rounds, self.insert_rounds)

    @property
    def insert_over_bare(self) -> float | None:
        """Median over the rounds of insert_i / bare_i: the most a design that writes once per task
        could reach against the no-op on this machine."""
        return _median_ratio(self.insert_rounds, self.bare_rounds)

    # ---- part 3
    @staticmethod
    def best(runs: list[Publish]) -> Publish | None:
        return max(runs, key=lambda run: run.rate) if runs else None

    @property
    def leader_ratio(self) -> float | None:
        leader, plain = self.best(self.leader), self.best(self.plain)
        if leader is None or plain is None or not plain.rate:
            return None
        return leader.rate / plain.rate

    @property
    def publish_ok(self) -> bool:
        return bool(self.leader and self.plain) and all(run.ok for run in self.leader + self.plain)

    @property
    def leader_goal_met(self) -> bool:
        ratio = self.leader_ratio
        return self.publish_ok and ratio is not None and ratio >= GOAL_LEADER_OVER_PLAIN

    # ---- part 4
    @property
    def memory_growth(self) -> int | None:
        if len(self.memory) < 2:
            return None
        return self.memory[-1].peak_rss - self.memory[0].peak_rss

    @property
    def memory_goal_met(self) -> bool:
        growth = self.memory_growth
        return (
            all(run.ok for run in self.memory) and growth is not None and growth < GOAL_MEMORY_GROWTH_MB * MIB
        )


def _median_ratio(numerators: list[Throughput], denominators: list[Throughput]) -> float | None:
    """The median over the rounds of numerators_i / denominators_i (a round without a rate left out)."""
    return median_ratio([run.rate for run in numerators], [run.rate for run in denominators])
