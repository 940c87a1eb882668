"""smq's Prometheus metrics: what the workers, the scheduler and the leader count.

`Metrics` is an `Observer` (smq.execution.observer): the runner tells it of executions created, steps
taken (state durations, Retry attempts and errors) and executions that end or park; the dispatcher of
timers fired and executions taken over. The workers and the leader call its other methods (a Celery
retry, a dead letter, a leader's progress). Scrape-time gauges (queues, waits) are in
`smq.observability.collectors`.

Labels stay bounded: state machine ids, state types, statuses, queues, reasons and error names, never
an execution id or name. Error names are user-defined (`TaskError("Payment.Declined")`), so a process
keeps at most `MAX_ERROR_NAMES` of them besides AWS's `States.*` and counts any other as `other`.

The metric objects are made once per process and registry (`metrics_for`), on first use: in a worker
each pool process makes its own, writing to its own files of the multiprocess directory the worker set
up before the pool forked (smq.observability.exposition), and the worker's main process serves the sum.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from smq.engine.cursor import Step
from smq.engine.status import EntryStatus, Status
from smq.execution.observer import Observer
from smq.execution.recovery import Recovered
from smq.repository.records import ExecutionRecord
from smq.repository.waits import Woken
from smq.settings import QUEUES

MAX_ERROR_NAMES = 50
OTHER = "other"

# Seconds. States run from tens of microseconds (Pass) to minutes (Task); executions may wait for days.
STATE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
EXECUTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 86400)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

ERROR_STATUSES = frozenset({EntryStatus.FAILED, EntryStatus.CAUGHT, EntryStatus.TIMED_OUT})
TAKEN_OVER_FAILED = frozenset({"fail", "exhausted"})  # recovery actions that end the execution FAILED


class BoundedNames:
    """A label value from an open set (error names): kept while fewer than `limit` distinct values have
    been seen in this process (AWS's `States.*` always), `other` after that."""

    def __init__(self, limit: int = MAX_ERROR_NAMES) -> None:
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, name: str | None) -> str:
        if not name:
            return "none"
        name = name[:100]
        if name in self.seen or name.startswith("States."):
            return name
        with self.lock:
            if len(self.seen) >= self.limit:
                return OTHER
            self.seen.add(name)
        return name


def queue_label(queue: str | None) -> str:
    """One of smq's queues, or `other` (a bad message may name any routing key)."""
    return queue if queue in QUEUES else OTHER


def wait_kind(cursor: dict[str, Any] | None) -> str:
    """What a parked execution waits for, as a label: message, callback, timer or branches."""
    cursor = cursor or {}
    kind = (cursor.get("pending") or {}).get("kind")
    if kind in ("message", "callback"):
        return str(kind)
    if kind == "fanout":
        return "branches"
    return "timer"


class Metrics(Observer):
    """The metric objects of one registry, and the hooks that update them."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        machine = ["state_machine"]
        self.executions_started = Counter(
            "smq_executions_started", "Executions created.", machine, registry=registry
        )
        self.executions_finished = Counter(
            "smq_executions_finished",
            "Executions that ended, by final status (as `smq executions count`).",
            [*machine, "status"],
            registry=registry,
        )
        self.executions_parked = Counter(
            "smq_executions_parked",
            "Runs that parked their execution (WAITING), by what it waits for.",
            [*machine, "waiting_for"],
            registry=registry,
        )
        self.execution_duration = Histogram(
            "smq_execution_duration_seconds",
            "From an execution's start to its end (waits included), by final status.",
            [*machine, "status"],
            buckets=EXECUTION_BUCKETS,
            registry=registry,
        )
        self.state_duration = Histogram(
            "smq_state_duration_seconds",
            "One visit of one state (a Retry attempt is a visit), by state type.",
            [*machine, "state_type"],
            buckets=STATE_BUCKETS,
            registry=registry,
        )
        self.state_retries = Counter(
            "smq_state_retries",
            "State attempts that failed and were retried (ASL Retry), by error name.",
            [*machine, "state_type", "error"],
            registry=registry,
        )
        self.state_errors = Counter(
            "smq_state_errors",
            "States that failed (caught, or failing the execution), by error name.",
            [*machine, "state_type", "error"],
            registry=registry,
        )
        self.task_retries = Counter(
            "smq_task_retries",
            "Celery deliveries of an execution retried after an infrastructure error, by exception.",
            ["error"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "smq_dead_letters",
            "Tasks and messages put in the dead letters.",
            ["reason", "queue"],
            registry=registry,
        )
        self.timers = Counter(
            "smq_timers_fired",
            "Waits resolved because they were due: timer (Wait, retry back-off), timeout, heartbeat_timeout.",
            ["resolution"],
            registry=registry,
        )
        self.timer_lag = Histogram(
            "smq_timer_lag_seconds",
            "How late the dispatcher fired a due wait (now - due time).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.leases_taken_over = Counter(
            "smq_leases_taken_over",
            "Executions whose process was lost, taken over: by the recovery scanner (its action), or by a "
            "worker from a dead pool process of its host (dead_process).",
            ["action"],
            registry=registry,
        )
        self.leader_sources = Counter(
            "smq_leader_sources",
            "A leader's sources, by outcome: enqueued, skipped (queued, running or chained), failed.",
            ["target", "outcome"],
            registry=registry,
        )
        self.leader_matched = Gauge(
            "smq_leader_sources_matched",
            "Sources the running leader's filter matched.",
            ["target"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.leader_progress_time = Gauge(
            "smq_leader_last_progress_time_seconds",
            "When the leader last published a chunk (Unix time).",
            ["target"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.error_name = BoundedNames()
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: prometheus-client takes a lock for every lookup."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------------------------------- the runner

    def started(self, record: ExecutionRecord) -> None:
        self._child(self.executions_started, record.state_machine_id).inc()

    def step(self, record: ExecutionRecord, step: Step) -> None:
        machine = record.state_machine_id
        for entry in step.entries:
            kind = entry.state_type
            self._child(self.state_duration, machine, kind).observe(
                max(0.0, entry.exited_at - entry.entered_at)
            )
            status = entry.status
            if status == EntryStatus.SUCCEEDED:
                continue
            if status == EntryStatus.RETRIED:
                self._child(self.state_retries, machine, kind, self.error_name(entry.error)).inc()
            elif status in ERROR_STATUSES:
                self._child(self.state_errors, machine, kind, self.error_name(entry.error)).inc()

    def ended(self, record: ExecutionRecord, waiting_for: str | None = None) -> None:
        machine = record.state_machine_id
        if record.status == Status.WAITING:
            self._child(self.executions_parked, machine, wait_kind(record.cursor)).inc()
            return
        self.finished(machine, record.status, record.duration_ms)

    def finished(self, state_machine_id: str, status: str, duration_ms: int | None = None) -> None:
        """An execution ended (by a run, a crash recovery or a dead letter)."""
        self._child(self.executions_finished, state_machine_id, status).inc()
        if duration_ms is not None:
            self._child(self.execution_duration, state_machine_id, status).observe(duration_ms / 1000)

    # ------------------------------------------------------------------------------------- the scheduler

    def timers_fired(self, woken: Sequence[Woken], now: datetime) -> None:
        for wake in woken:
            self._child(self.timers, wake.resolution).inc()
            if wake.due_at is not None:
                self.timer_lag.observe(max(0.0, (now - wake.due_at).total_seconds()))

    def recovered(self, recovered: Sequence[Recovered]) -> None:
        for item in recovered:
            self._child(self.leases_taken_over, item.action).inc()
            if item.action in TAKEN_OVER_FAILED:
                self.finished(item.state_machine_id, Status.FAILED)

    # ------------------------------------------------------------------------------ workers, leader

    def taken_over(self, record: ExecutionRecord, dead_owner: str) -> None:
        self._child(self.leases_taken_over, "dead_process").inc()

    def task_retried(self, error: BaseException) -> None:
        self._child(self.task_retries, self.error_name(type(error).__name__)).inc()

    def dead_lettered(self, reason: str, queue: str | None, failed_state_machine: str | None) -> None:
        """A dead letter was written; `failed_state_machine`: its execution was failed with it."""
        self._child(self.dead_letters, reason[:50], queue_label(queue)).inc()
        if failed_state_machine is not None:
            self.finished(failed_state_machine, Status.FAILED)

    def leader_started(self, target: str, matched: int) -> None:
        self._child(self.leader_matched, target).set(matched)
        self._child(self.leader_progress_time, target).set(time.time())

    def leader_progress(self, target: str, delta: dict[str, int]) -> None:
        """One chunk published: how many sources were enqueued, skipped, failed in it."""
        for outcome, count in delta.items():
            if count:
                self._child(self.leader_sources, target, outcome).inc(count)
        self._child(self.leader_progress_time, target).set(time.time())


class LeaderProgress:
    """A leader's `on_chunk` (smq.distributed.leader.fan_out): counts each chunk's sources by outcome.
    `fan_out` reports running totals; the counters take the difference."""

    OUTCOMES = ("enqueued", "skipped", "failed")

    def __init__(self, metrics: Metrics, target: str, matched: int) -> None:
        self.metrics = metrics
        self.target = target
        self.counted = dict.fromkeys(self.OUTCOMES, 0)
        metrics.leader_started(target, matched)

    def __call__(self, done: int, summary: Any) -> None:
        totals = {outcome: int(getattr(summary, outcome)) for outcome in self.OUTCOMES}
        self.metrics.leader_progress(
            self.target, {outcome: totals[outcome] - self.counted[outcome] for outcome in self.OUTCOMES}
        )
        self.counted = totals


_made: dict[int, Metrics] = {}
_lock = threading.Lock()


def metrics_for(registry: CollectorRegistry = REGISTRY) -> Metrics:
    """The process's `Metrics` of `registry` (made on first use: a registry takes each name once)."""
    with _lock:
        found = _made.get(id(registry))
        if found is None:
            found = _made[id(registry)] = Metrics(registry)
        return found
