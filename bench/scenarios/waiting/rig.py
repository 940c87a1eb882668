"""What every part of bench/waiting.py runs on: K Celery workers and one ``smq scheduler`` (in a wrapper
that logs every continuation it publishes), the definitions and state machines of each part, and the
way executions are created: enqueued through the real path and run until they park."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness.progress
import redis
from harness.paths import DEFINITIONS
from harness.processes import spawn_tracked, stop_processes, tail
from harness.progress import log
from harness.workers import CeleryWorkers
from sqlalchemy import text

from scenarios.waiting import guard

TIMER_FILE = DEFINITIONS / "wait_until.json"
MESSAGE_FILE = DEFINITIONS / "await_message.json"
TIMER_STATES = ("Sleep", "Woke")  # the Wait state, then the state that follows it
MESSAGE_STATES = ("Await", "Resumed")
MESSAGE_KEY = "bench-wait"  # CorrelationKey in await_message.json

LATENCY_TASK = "smq_bench.latency"  # registered by bench_handlers.py
TIMER_MACHINE = "bench-timer"
CATCHUP_MACHINE = "bench-catchup"
MESSAGE_MACHINE = "bench-message"
WARM_TIMER_MACHINE = "bench-warm-timer"
WARM_MESSAGE_MACHINE = "bench-warm-message"


# `smq scheduler`, with a hook that logs every task it publishes (wall time, state machine, name).
SCHEDULER_WRAPPER = """
import os, sys, time
from celery import signals

_out = open(os.environ["SMQ_BENCH_PUBLISH_LOG"], "a", buffering=1)

@signals.after_task_publish.connect(weak=False)
def _published(sender=None, body=None, **_):
    moment = time.time()
    try:
        payload = body[0][0]
        machine, name = payload.get("state_machine_id"), payload.get("name")
    except Exception:
        machine = name = None
    _out.write(f"{moment!r}\\t{machine}\\t{name}\\n")

sys.argv = ["smq", "scheduler"]
from smq.cli import main
main()
"""


class Workers(CeleryWorkers):
    """K `celery -A smq worker` processes."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path):
        super().__init__(count, env, log_dir, "wait", spawner=spawn_tracked)

    def wait_ready(self, app: Any, timeout: float = 90.0, check: Callable[[], None] | None = None) -> None:
        """Until every worker answers a control ping, watching for other clients on the Redis dbs."""
        super().wait_ready(app, timeout, check or guard.check)


class Scheduler:
    """`smq scheduler` (in SCHEDULER_WRAPPER), started and stopped on demand; one publish log per run."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.publish_log: Path | None = None
        self.spawned_at = 0.0

    def start(self) -> float:
        """Spawn it; returns the wall time of the spawn."""
        self.runs += 1
        self.publish_log = self.log_dir / f"published-{self.runs}.tsv"
        env = {**self.env, "SMQ_BENCH_PUBLISH_LOG": str(self.publish_log)}
        self.spawned_at = time.time()
        command = [sys.executable, "-c", SCHEDULER_WRAPPER]
        self.process = spawn_tracked(command, env, self.log_dir / "scheduler.log")
        return self.spawned_at

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"smq scheduler exited with {self.process.returncode}; its log ends with:\n"
                f"{tail(self.log_dir / 'scheduler.log')}"
            )

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None and self.process.poll() is None else []

    def stop(self) -> None:
        if self.process is None:
            return
        code = stop_processes([self.process])[0]  # SIGTERM: its clean stop
        self.process = None
        if code not in (0, None):
            log(f"smq scheduler exited with {code} when stopped; see {self.log_dir / 'scheduler.log'}")

    def published(self) -> dict[tuple[str, str], list[float]]:
        """Every continuation published by every run so far: (state machine, name) -> wall times."""
        found: dict[tuple[str, str], list[float]] = {}
        for path in sorted(self.log_dir.glob("published-*.tsv")):
            for line in path.read_text().splitlines():
                fields = line.split("\t")
                if len(fields) != 3:
                    continue  # a line being written as we read (only a recovery scan publishes then)
                moment, machine, name = fields
                found.setdefault((machine, name), []).append(float(moment))
        return found


def status_counts(repo: Any, machine: str) -> dict[str, int]:
    with repo.reader.connect() as connection:
        rows = connection.execute(
            text("SELECT status, count(*) FROM smq_executions WHERE state_machine_id = :sm GROUP BY status"),
            {"sm": machine},
        )
        return {status: int(count) for status, count in rows}


def finished_count(repo: Any, machine: str) -> int:
    counts = status_counts(repo, machine)
    return sum(count for status, count in counts.items() if status not in ("RUNNING", "WAITING"))


def wait_for(
    progress: Callable[[], int],
    target: int,
    label: str,
    alive: Callable[[], None],
    *,
    poll: float = 0.5,
    quiet_until: float = 0.0,
) -> None:
    """Poll `progress()` until it reaches `target`; fail if a process died, another client appeared on
    the Redis dbs, or nothing moved for a minute (not counting the time before `quiet_until`, a wall
    time before which nothing is expected)."""

    def checks() -> None:
        alive()
        guard.check()

    harness.progress.wait_for(progress, target, label, checks, poll=poll, quiet_until=quiet_until)


def timestamp(epoch: float) -> str:
    """AWS's format, millisecond precision, so the due time the engine parses is exactly this."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return float(value.timestamp())


@dataclass(frozen=True)
class Rig:
    """What every part runs on, the same for the whole run: smq's Celery app (publishing to the
    workers' db), the bench database's repository, the queue client and the operations that send
    messages, the workers' broker db and the db the bare tasks record their samples in, the workers
    and the scheduler."""

    app: Any
    repo: Any
    client: Any
    operations: Any
    broker: redis.Redis
    records: redis.Redis
    workers: Workers
    scheduler: Scheduler

    def alive(self) -> None:
        """Raise if a worker or the scheduler has exited."""
        self.workers.check_alive()
        self.scheduler.check_alive()


def park(
    client: Any,
    repo: Any,
    machine: str,
    inputs: list[tuple[str, dict[str, Any]]],
    alive: Callable[[], None],
    label: str,
) -> float:
    """Enqueue one execution per (name, input) through the real path and wait until every one is
    WAITING (or has finished, which the verification then reports). Returns the seconds it took."""
    start = time.time()
    summary = client.enqueue_many(({"state_machine_id": machine, "name": n, "input": i} for n, i in inputs))
    if summary.enqueued != len(inputs):
        raise RuntimeError(f"{label}: enqueue_many returned {summary.to_dict()}")

    def parked() -> int:
        counts = status_counts(repo, machine)
        return sum(count for status, count in counts.items() if status != "RUNNING")

    wait_for(parked, len(inputs), label, alive, poll=0.25)
    return time.time() - start
