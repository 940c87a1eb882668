"""Waiting: durable-timer dispatch lag and message-to-resume latency, beside bare Celery enqueue-to-start.

Everything runs in one invocation, on one Redis server, one fresh PostgreSQL database
(``smq_bench_wait_<pid>``, created next to ``--pg-url``'s, migrated with
``smq.repository.database.upgrade``, dropped at the end) and the same processes throughout:

- ``--workers`` K (default 2) Celery workers, each exactly
  ``celery -A smq worker -Q critical,default,low -c 1 --pool prefork`` (plus ``-n`` and ``-l``), with
  cwd = the repository, ``SMQ_BROKER_URL`` = Redis db ``--redis-db`` (default 9),
  ``SMQ_DATABASE_URL`` = the fresh database, ``SMQ_HANDLERS`` = ``bench/bench_handlers.py`` (which
  registers the bare task ``smq_bench.latency``) and ``SMQ_BENCH_RECORD_URL`` = Redis db
  ``--record-db`` (default 10), where that task writes its samples;
- one ``smq scheduler`` (the real dispatcher, the CLI) with the same broker and database. It runs in
  a small ``python -c`` wrapper that connects Celery's ``after_task_publish`` signal and appends
  "<wall time> <state machine> <name>" to a file for every continuation it publishes, then calls
  ``smq.cli.main`` with ``scheduler``: nothing else differs. ``SMQ_SCHEDULER_INTERVAL``,
  ``SMQ_PARK_AFTER`` etc. are taken from the environment (defaults 0.2 s and 5 s).

Both Redis dbs are flushed at the start and at the end. The integration tests use dbs 11 and 12 and
bench/distributed.py 13 and 14, so these defaults stay clear of them; as a guard, the script refuses to start if a client that is not its own
(judged through /proc: the process holding the socket) is on either db at any of 5 checks a second apart,
aborts as soon as one appears while it runs, and then leaves the dbs unflushed (``--force-redis`` skips
these checks).
Every subprocess runs in its own session and is stopped on exit, on error and on SIGTERM/SIGINT.

Parts (all latencies are wall clock on this host; p50/p99 are nearest-rank percentiles):

0. **Warm-up** (not timed): bare tasks, timers that park and fire, messages that resume. The timer
   warm-up also measures how fast the workers park executions, which sets part 2's lead time.
1. **Bare Celery enqueue-to-start**: ``--bare`` N (default 1,000) ``smq_bench.latency`` tasks sent at
   ``--bare-rate`` per second (default 200: paced, so it measures latency, not a backlog), each
   carrying its send time; the task appends (sent, started) to a Redis list first thing.
2. **Timer dispatch lag**: ``--timers`` N (default 10,000) executions of
   ``definitions/wait_until.json`` (``Wait`` on ``TimestampPath``, then a Pass), created through the
   real path: enqueued with ``QueueClient.enqueue_many``, run by the workers, which park each one
   (status WAITING, a timer row in ``smq_waits``). Their due times are spread evenly over
   ``--spread`` seconds (default 60: all due within the same minute) starting after every one has
   parked. Per execution, against its due time: *fired* (``smq_waits.resolved_at``: the dispatcher
   resolved the timer), *enqueued* (the publish seen by the hook: what the dispatcher controls),
   *started* (the Wait state's ``exited_at``: a worker has taken the continuation and completed the
   Wait) and *next state* (the Pass state's ``entered_at``: what the user sees).
3. **Catch-up after downtime**: the scheduler is stopped, ``--catchup`` M (default 5,000) more timers
   are parked, due over ``--catchup-spread`` seconds (default 10); ``--downtime`` seconds (default 20)
   after the last one is due the scheduler is started again. From its spawn: first and last timer
   fired, last continuation enqueued, last continuation started, last execution finished.
4. **Message-to-resume**: ``--messages`` K (default 500) executions of
   ``definitions/await_message.json`` park on a Message state, each with its own correlation value;
   messages are sent at ``--message-rate`` per second (default 50) with
   ``Operations.send_message(key, value, data)`` in this process. Latency = the resumed execution's
   next-state ``entered_at`` (history) minus the time just before the call; the call's own duration
   (database transaction + enqueue) and the Message state's ``exited_at`` are reported beside it.

Verified: every timer execution SUCCEEDED, with exactly one wait row (RESOLVED by ``timer``, due at the
time asked), history = the Wait state once and the Pass state once, never fired or completed before its
due time, its continuation published exactly once, all parked before the first due time; every message
execution SUCCEEDED, resumed exactly once (one wait resolved by ``message``, one ``smq_messages`` row
naming it, the message state and the next state once each in history, the message data in its output);
all bare samples arrived; no dead letters; the queues and the unacked set empty at the end.

The goal judged: the dispatcher enqueues continuations within a second of their due time under normal
load, i.e. part 2's *enqueued* p99 <= 1 s. Exit status 0 only if everything verified and the goal was
met; 1 otherwise (including when the run aborts: what was measured is still printed).

Usage::

    python bench/waiting.py                 # table on stdout, progress on stderr (about 7 minutes)
    python bench/waiting.py --quick         # small sizes, about a minute and a half
    python bench/waiting.py --json          # machine-readable (--save PATH writes it as well)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness.progress
import redis
from harness.cpu import CpuMeter
from harness.database import postgres_pids
from harness.figures import Stats, ratio
from harness.lifecycle import Interrupted, RunClock, errors_recorded, stop_on_signals, work_directory
from harness.paths import DEFINITIONS, HANDLERS_FILE
from harness.processes import parent_pids, spawn_tracked, stop_processes, tail
from harness.progress import log
from harness.queues import QUEUE, flushed_redis, leftover_messages
from harness.report import console, emit_report, fmt, judged, load_line, simple_table, source_state, verdict
from harness.servers import DEFAULT_PG_URL, DEFAULT_REDIS_URL, fresh_database, redis_base_url
from harness.workers import CeleryWorkers
from sqlalchemy import text

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

GOAL_ENQUEUE_LAG_SECONDS = 1.0
LEAD_FACTOR = 1.3  # part 2's lead time: measured parking rate, with this much headroom
LEAD_MARGIN = 5.0  # ... plus SMQ_PARK_AFTER plus this many seconds
START_CHECKS = 5  # the Redis dbs must be free of other clients this many times, a second apart

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


# ------------------------------------------------------------------ figures


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


@dataclass
class Messages:
    count: int
    rate: float
    sent_rate: float = 0.0
    create_seconds: float = 0.0
    call: Stats = field(default_factory=Stats)  # the send_message call itself
    started: Stats = field(default_factory=Stats)  # send -> Message state completed on a worker
    next_state: Stats = field(default_factory=Stats)  # send -> next state entered
    ok: bool = False
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "executions": self.count,
            "target_rate": self.rate,
            "sent_per_second": round(self.sent_rate, 1),
            "create_seconds": round(self.create_seconds, 2),
            "send_message_call": self.call.as_dict(),
            "send_to_started": self.started.as_dict(),
            "send_to_next_state": self.next_state.as_dict(),
            "verified": self.ok,
            "detail": self.detail,
        }


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


# ------------------------------------------------------------------ processes


def _guard_check() -> None:
    if _guard is not None:
        _guard.check()


class Workers(CeleryWorkers):
    """K `celery -A smq worker` processes."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path):
        super().__init__(count, env, log_dir, "wait", spawner=spawn_tracked)

    def wait_ready(self, app: Any, timeout: float = 90.0, check: Callable[[], None] | None = None) -> None:
        """Until every worker answers a control ping, watching for other clients on the Redis dbs."""
        super().wait_ready(app, timeout, check or _guard_check)


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


# ------------------------------------------------------------------ infrastructure


def _my_tree() -> set[int]:
    """This process and every process descended from it."""
    parents = parent_pids()
    tree, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _socket_owners(server_port: int) -> dict[int, int]:
    """Local port -> pid, for this host's TCP connections to `server_port`."""
    inodes: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == server_port:
                    inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        owners[inodes[target[8:-1]]] = int(entry.name)
    return owners


def _cmdline(pid: int | None) -> str:
    if pid is None:
        return "(process not found)"
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    return "?"


class RedisGuard:
    """Another client on the benchmark's Redis dbs (a test run, another benchmark) would take its tasks
    and have its own taken: refuse to start then, and abort as soon as one appears while running. A
    client is ours when the process holding its socket is this script or one of its descendants (found
    through /proc); one that is not ours on two checks in a row is foreign. After an intrusion the dbs
    are left as they are at the end (not flushed under the other user's feet)."""

    def __init__(self, client: redis.Redis, dbs: tuple[int, ...], every: float = 2.0):
        self.client, self.dbs, self.every = client, dbs, every
        self.port = int(client.connection_pool.connection_kwargs.get("port", 6379))
        self.ours: set[str] = set()
        self.suspects: set[str] = set()
        self.intruded = False
        self._last = 0.0

    def foreign(self) -> dict[str, str]:
        """addr -> description, for the clients on our dbs that are not ours."""
        entries = [e for e in self.client.client_list() if int(e.get("db", -1)) in self.dbs]
        unknown = [e for e in entries if e["addr"] not in self.ours]
        if not unknown:
            return {}
        owners, tree = _socket_owners(self.port), _my_tree()
        found = {}
        for entry in unknown:
            pid = owners.get(int(entry["addr"].rsplit(":", 1)[1]))
            if pid in tree:
                self.ours.add(entry["addr"])
            else:
                found[entry["addr"]] = f"{entry['addr']} on db {entry['db']}: pid {pid} {_cmdline(pid)}"
        return found

    def check(self, *, at_start: bool = False) -> None:
        now = time.monotonic()
        if not at_start and now - self._last < self.every:
            return
        self._last = now
        found = self.foreign()
        confirmed = list(found.values()) if at_start else [t for a, t in found.items() if a in self.suspects]
        self.suspects = set(found)
        if confirmed:
            self.intruded = not at_start
            raise RuntimeError(
                f"Redis db(s) {', '.join(map(str, self.dbs))} {'are' if at_start else 'became'} used by "
                f"{len(confirmed)} other client(s): {'; '.join(confirmed[:4])}. The integration tests use "
                "dbs 11 and 12: if these are yours, choose other dbs with "
                "--redis-db/--record-db"
            )


_guard: RedisGuard | None = None


def _intruded() -> str | None:
    """Why flushed_redis must leave the dbs as they are at the end (another client used them)."""
    if _guard is not None and _guard.intruded:
        return "another client used the benchmark's Redis dbs: left as they are (not flushed)"
    return None


def queue_leftovers(broker: redis.Redis) -> list[str]:
    """Messages still queued or unacknowledged (all should be gone once a part has finished)."""
    return leftover_messages(broker, "{} message(s) left in the queues", "{} unacknowledged message(s)")


def dead_letters(repo: Any) -> int:
    with repo.reader.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM smq_dead_letters")).scalar_one())


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
        _guard_check()

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


def all_alive(workers: Workers, scheduler: Scheduler) -> Callable[[], None]:
    """A check that raises if a worker or the scheduler has exited."""

    def alive() -> None:
        workers.check_alive()
        scheduler.check_alive()

    return alive


# ------------------------------------------------------------------ creating parked executions


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


# ------------------------------------------------------------------ part 1: bare Celery


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


def run_bare(
    app: Any, records: redis.Redis, broker: redis.Redis, count: int, rate: float, alive: Any
) -> Bare:
    result = Bare(count, rate)
    key = "bare:latency"

    def send(_index: int) -> None:
        app.send_task(LATENCY_TASK, args=(key, time.time()), queue=QUEUE)

    result.sent_rate = send_paced(count, rate, send)
    wait_for(lambda: int(records.llen(key)), count, "bare", alive, poll=0.1)
    time.sleep(0.5)
    samples = [tuple(map(float, raw.split())) for raw in records.lrange(key, 0, -1)]
    result.latency = Stats.of([started - sent for sent, started in samples])
    problems = [] if len(samples) == count else [f"{len(samples)} samples, expected {count}"]
    problems += queue_leftovers(broker)
    result.ok, result.detail = not problems, "; ".join(problems)
    return result


# ------------------------------------------------------------------ parts 2 and 3: timers

# One execution's history: its rows, how often it entered the wait state and the next one, when it
# left the first and entered the second (appended to TIMER_ROWS and MESSAGE_ROWS).
HISTORY_ROWS = """LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           count(*) FILTER (WHERE state_name = :wait_state) AS wait_n,
           count(*) FILTER (WHERE state_name = :next_state) AS next_n,
           max(exited_at) FILTER (WHERE state_name = :wait_state) AS wait_exit,
           max(entered_at) FILTER (WHERE state_name = :next_state) AS next_enter,
           bool_and(status = 'SUCCEEDED') AS all_succeeded
    FROM smq_history WHERE execution_id = e.id
) h ON true
WHERE e.state_machine_id = :sm
"""

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


class Problems:
    """Counts of what failed verification, by kind, with one example each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def extend(self, problems: list[str]) -> None:
        for problem in problems:
            self.add(problem, "")

    def text(self) -> str:
        return "; ".join(
            f"{kind}: {count}" + (f" (e.g. {self.examples[kind]})" if self.examples[kind] else "")
            for kind, count in self.counts.items()
        )


def check_resumed_once(problems: Problems, row: Any, kind: str, states: tuple[str, str]) -> None:
    """What every parked execution must show at the end (a TIMER_ROWS or MESSAGE_ROWS row): SUCCEEDED,
    exactly one wait of `kind` resolved by a `kind`, and the wait state then the next one once each."""
    if row.status != "SUCCEEDED":
        problems.add(f"status {row.status}", row.name)
    if row.waits != 1 or row.resolutions != f"{kind}:RESOLVED:{kind}":
        problems.add(f"not exactly one {kind} wait, resolved by the {kind}", f"{row.name}: {row.resolutions}")
    if row.rows != 2 or row.wait_n != 1 or row.next_n != 1 or not row.all_succeeded:
        problems.add(f"history not {states[0]} once then {states[1]} once", f"{row.name}: {row.rows} rows")


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
    fired, enqueued, started, next_state, finished = [], [], [], [], []
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


def finish_checks(result: Timers | Messages | Bare, repo: Any, broker: redis.Redis) -> None:
    time.sleep(0.5)  # late acknowledgement: the last ack follows the last checkpoint
    problems = queue_leftovers(broker)
    dead = dead_letters(repo)
    if dead:
        problems.append(f"{dead} dead letter(s)")
    if problems:
        result.ok = False
        result.detail = "; ".join(filter(None, [result.detail, *problems]))


def run_timers(
    args: argparse.Namespace,
    repo: Any,
    client: Any,
    broker: redis.Redis,
    workers: Workers,
    scheduler: Scheduler,
    park_rate: float,
    park_after: float,
) -> Timers:
    result = Timers(TIMER_MACHINE, args.timers, args.spread)
    result.lead = args.timer_lead or (args.timers / park_rate * LEAD_FACTOR + park_after + LEAD_MARGIN)
    alive = all_alive(workers, scheduler)

    begin = time.time()
    first_due = begin + result.lead
    inputs = timer_inputs("t", args.timers, first_due, args.spread)
    log(
        f"timers: parking {args.timers:,} executions, due over {args.spread:g}s from "
        f"{timestamp(first_due)} (lead {result.lead:.0f}s)"
    )
    result.create_seconds = park(client, repo, TIMER_MACHINE, inputs, alive, "timers parked")
    parked_at = time.time()
    result.slack = first_due - parked_at
    log(
        f"  parked in {result.create_seconds:.1f}s ({result.create_rate:,.0f}/s); "
        f"{result.slack:.1f}s before the first due time"
    )
    if parked_at < first_due - 1:
        time.sleep(first_due - parked_at - 1)
    meter = timers_meter(scheduler, workers, repo)
    meter.start()
    wait_for(
        lambda: finished_count(repo, TIMER_MACHINE),
        args.timers,
        "timers finished",
        alive,
        poll=1.0,
        quiet_until=first_due + args.spread,
    )
    result.cpu = meter.stop().percent_of_one_cpu()
    time.sleep(0.5)
    verify_timers(repo, result, scheduler.published(), first_due)
    finish_checks(result, repo, broker)
    return result


def run_catchup(
    args: argparse.Namespace,
    repo: Any,
    client: Any,
    broker: redis.Redis,
    workers: Workers,
    scheduler: Scheduler,
    park_rate: float,
    park_after: float,
) -> Timers:
    result = Timers(CATCHUP_MACHINE, args.catchup, args.catchup_spread, downtime=args.downtime)
    log("catch-up: stopping the scheduler")
    scheduler.stop()
    stopped = time.time()
    result.lead = args.catchup / park_rate * LEAD_FACTOR + park_after + LEAD_MARGIN
    first_due = time.time() + result.lead
    inputs = timer_inputs("c", args.catchup, first_due, args.catchup_spread)
    log(f"catch-up: parking {args.catchup:,} executions while the scheduler is down")
    result.create_seconds = park(
        client, repo, CATCHUP_MACHINE, inputs, workers.check_alive, "catch-up parked"
    )
    result.slack = first_due - time.time()
    restart = first_due + args.catchup_spread + args.downtime
    log(f"  parked; restarting the scheduler in {restart - time.time():.0f}s")
    time.sleep(max(0.0, restart - time.time()))
    spawned = scheduler.start()
    alive = all_alive(workers, scheduler)
    meter = timers_meter(scheduler, workers, repo)
    meter.start()
    wait_for(
        lambda: finished_count(repo, CATCHUP_MACHINE), args.catchup, "catch-up finished", alive, poll=0.5
    )
    result.cpu = meter.stop().percent_of_one_cpu()
    time.sleep(0.5)
    extremes = verify_timers(repo, result, scheduler.published(), first_due, (stopped, spawned))
    result.from_spawn = {key: value - spawned for key, value in extremes.items()}
    finish_checks(result, repo, broker)
    return result


def timers_meter(scheduler: Scheduler, workers: Workers, repo: Any) -> CpuMeter:
    """CPU of the scheduler, the workers (main + pool) and the PostgreSQL backends while timers fire."""
    return CpuMeter(
        {"scheduler": scheduler.pids, "workers (main + pool)": workers.pids, "postgres": postgres_pids(repo)}
    )


# ------------------------------------------------------------------ part 4: messages

MESSAGE_ROWS = (
    """
SELECT e.id, e.name, e.status, e.input, e.output,
       w.n AS waits, w.resolutions,
       h.n AS rows, h.wait_n, h.next_n, h.wait_exit, h.next_enter, h.all_succeeded
FROM smq_executions e
LEFT JOIN LATERAL (
    SELECT count(*) AS n,
           string_agg(kind || ':' || status || ':' || coalesce(resolution, ''), ',') AS resolutions
    FROM smq_waits WHERE execution_id = e.id
) w ON true
"""
    + HISTORY_ROWS
)


def message_value(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}"


def run_messages(
    args: argparse.Namespace,
    repo: Any,
    client: Any,
    operations: Any,
    broker: redis.Redis,
    workers: Workers,
    scheduler: Scheduler,
    machine: str = MESSAGE_MACHINE,
    count: int | None = None,
    rate: float | None = None,
) -> Messages:
    count = args.messages if count is None else count
    rate = args.message_rate if rate is None else rate
    result = Messages(count, rate)
    prefix = "m" if machine == MESSAGE_MACHINE else "warm"
    alive = all_alive(workers, scheduler)
    inputs = [(f"{prefix}-{i:06d}", {"id": message_value(prefix, i)}) for i in range(count)]
    result.create_seconds = park(client, repo, machine, inputs, alive, f"{machine} parked")
    sends: dict[str, tuple[float, float, list[str]]] = {}  # value -> (before, after, resumed ids)

    def send(index: int) -> None:
        value = message_value(prefix, index)
        before = time.time()
        resumed = operations.send_message(MESSAGE_KEY, value, {"i": index})
        after = time.time()
        sends[value] = (before, after, [w.execution_id for w in resumed.executions])
        if resumed.continued.enqueued != len(resumed.executions) or resumed.continued.failed:
            raise RuntimeError(f"send_message({value!r}): continuations {resumed.continued.to_dict()}")

    result.sent_rate = send_paced(count, rate, send)
    wait_for(lambda: finished_count(repo, machine), count, f"{machine} finished", alive, poll=0.25)
    time.sleep(0.5)
    problems = Problems()
    with repo.reader.connect() as connection:
        rows = list(
            connection.execute(
                text(MESSAGE_ROWS),
                {"sm": machine, "wait_state": MESSAGE_STATES[0], "next_state": MESSAGE_STATES[1]},
            )
        )
        messages: dict[str, list[Any]] = {}
        for value, resumed in connection.execute(
            text("SELECT correlation_value, resumed FROM smq_messages WHERE correlation_key = :key"),
            {"key": MESSAGE_KEY},
        ):
            messages.setdefault(json.loads(value), []).append(resumed)
    if len(rows) != count:
        problems.add("executions found", f"{len(rows)}, expected {count}")
    calls, started, next_state = [], [], []
    for row in rows:
        value = row.input.get("id")
        before, after, resumed_ids = sends.get(value, (None, None, []))
        check_resumed_once(problems, row, "message", MESSAGE_STATES)
        if resumed_ids != [row.id]:
            problems.add("send_message did not resume exactly this execution", f"{row.name}: {resumed_ids}")
        if messages.get(value) != [[row.id]]:
            problems.add(
                "smq_messages does not show one message resuming it", f"{row.name}: {messages.get(value)}"
            )
        index = int(value.rsplit("-", 1)[1])
        if not isinstance(row.output, dict) or row.output.get("message") != {"i": index}:
            problems.add("message data not in the output", f"{row.name}: {row.output}")
        if before is None:
            continue
        calls.append(after - before)
        for moment, lags in ((epoch(row.wait_exit), started), (epoch(row.next_enter), next_state)):
            if moment is not None:
                lags.append(moment - before)
    result.call, result.started, result.next_state = Stats.of(calls), Stats.of(started), Stats.of(next_state)
    result.ok, result.detail = not problems.counts, problems.text()
    finish_checks(result, repo, broker)
    return result


# ------------------------------------------------------------------ warm-up


def warm_up(
    app: Any,
    repo: Any,
    client: Any,
    operations: Any,
    records: redis.Redis,
    broker: redis.Redis,
    workers: Workers,
    scheduler: Scheduler,
    args: argparse.Namespace,
    park_after: float,
) -> float:
    """Bare tasks, timers that park and fire, messages that resume: every code path once in every pool
    child, untimed. Returns the rate at which the timer warm-up parked executions (per second)."""
    alive = all_alive(workers, scheduler)
    count = 20 * len(workers.names)
    for _ in range(count):
        app.send_task(LATENCY_TASK, args=("warm:latency", time.time()), queue=QUEUE)
    wait_for(lambda: int(records.llen("warm:latency")), count, "warm-up bare", alive, poll=0.1)
    # Due far enough ahead to park even if parking ran at only 20 per second.
    lead = park_after + 3 + args.warm_timers / 20
    inputs = timer_inputs("w", args.warm_timers, time.time() + lead, 1.0)
    seconds = park(client, repo, WARM_TIMER_MACHINE, inputs, alive, "warm-up timers parked")
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
    warm = run_messages(
        args,
        repo,
        client,
        operations,
        broker,
        workers,
        scheduler,
        machine=WARM_MESSAGE_MACHINE,
        count=5 * len(workers.names),
        rate=20.0,
    )
    if not warm.ok:
        raise RuntimeError(f"warm-up messages: {warm.detail}")
    return rate


# ------------------------------------------------------------------ report


def _ms(value: float | None) -> str:
    return fmt(value, 1, scale=1000)


def report_table(results: Results, args: argparse.Namespace, report: dict[str, Any]) -> Any:
    table = simple_table(
        f"Waiting: {args.workers} worker(s) x `-c 1 --pool prefork` + `smq scheduler` "
        f"(poll {report['settings'].get('scheduler_interval', '?')}s), Redis + PostgreSQL",
        "part", "latency", ("n", "right"), ("p50 ms", "right"), ("p99 ms", "right"), ("max ms", "right"),
        ("p50 / bare", "right"), ("p99 / bare", "right"), "result",
    )  # fmt: skip

    def row(part: str, label: str, stats: Stats, result: str = "", ratios: bool = True) -> None:
        table.add_row(
            part,
            label,
            f"{stats.count:,}",
            _ms(stats.p50),
            _ms(stats.p99),
            _ms(stats.max),
            fmt(results.ratio(stats, "p50"), 1, suffix="x") if ratios else "",
            fmt(results.ratio(stats, "p99"), 1, suffix="x") if ratios else "",
            result,
        )

    if results.bare:
        bare = results.bare
        row(
            "1",
            f"bare Celery: send_task → task starts ({bare.sent_rate:,.0f}/s)",
            bare.latency,
            verdict(bare.ok),
            ratios=False,
        )
    if results.timers:
        timers = results.timers
        goal = f"goal p99 <= {GOAL_ENQUEUE_LAG_SECONDS * 1000:,.0f} ms: " + judged(results.goal_met)
        where = f"{timers.count:,} due over {timers.spread:g}s"
        row("2", f"timer fired (wait resolved) − due; {where}", timers.fired)
        row("2", "timer continuation enqueued − due", timers.enqueued, goal)
        row("2", "timer continuation started (Wait done on a worker) − due", timers.started)
        row("2", "timer next state entered − due", timers.next_state, verdict(timers.ok))
    if results.catchup:
        catchup = results.catchup
        row(
            "3",
            f"catch-up: next state entered − due ({catchup.count:,} overdue by >= {catchup.downtime:g}s)",
            catchup.next_state,
            verdict(catchup.ok),
            ratios=False,
        )
    if results.messages:
        messages = results.messages
        row("4", f"send_message call (DB + enqueue; {messages.sent_rate:,.0f}/s)", messages.call)
        row("4", "send → continuation started (Message done on a worker)", messages.started)
        row("4", "send → next state entered", messages.next_state, verdict(messages.ok))
    return table


def catchup_table(catchup: Timers) -> Any:
    table = simple_table(
        f"Part 3, catch-up: scheduler down while {catchup.count:,} timers came due over "
        f"{catchup.spread:g}s, restarted {catchup.downtime:g}s after the last",
        "from the scheduler's spawn to",
        ("seconds", "right"),
        ("timers/s", "right"),
    )
    labels = (
        ("first_fired", "first timer fired"),
        ("last_fired", "last timer fired"),
        ("first_enqueued", "first continuation enqueued"),
        ("last_enqueued", "last continuation enqueued (the dispatcher has caught up)"),
        ("last_started", "last continuation started on a worker"),
        ("last_finished", "last execution SUCCEEDED (drained)"),
    )
    for key, label in labels:
        value = catchup.from_spawn.get(key)
        rate = (
            ""
            if value is None or not key.startswith("last") or value <= 0
            else f"{catchup.count / value:,.0f}"
        )
        table.add_row(label, "n/a" if value is None else f"{value:,.2f}", rate)
    return table


def print_report(report: dict[str, Any], results: Results, args: argparse.Namespace) -> None:
    out = console(200)
    out.print(report_table(results, args, report))
    if results.catchup and results.catchup.from_spawn:
        out.print(catchup_table(results.catchup))
    notes = []
    for part in (results.timers, results.catchup):
        if part is None:
            continue
        notes.append(
            f"{part.machine}: {part.count:,} parked in {part.create_seconds:.1f}s "
            f"({part.create_rate:,.0f}/s through the workers), {part.slack:.1f}s before the first due time; "
            f"{part.publishes:,} continuations published; CPU (% of one CPU) while they ran: "
            + ", ".join(f"{name} {value:.0f}" for name, value in part.cpu.items())
        )
    if results.messages:
        notes.append(
            f"{MESSAGE_MACHINE}: {results.messages.count:,} parked in {results.messages.create_seconds:.1f}s"
        )
    for note in notes:
        out.print(note)
    out.print(
        f"{load_line(report)}; verified: {report['verified']}; "
        f"goal (timer enqueue lag p99 <= {GOAL_ENQUEUE_LAG_SECONDS:g}s) met: {report['goal_met']}"
    )
    for part in (results.bare, results.timers, results.catchup, results.messages):
        if part is not None and part.detail:
            out.print(f"[red]{type(part).__name__.lower()}: {part.detail}[/]")
    for error in results.errors:
        out.print(f"[red]error: {error}[/]")


def build_report(
    args: argparse.Namespace, results: Results, clock: RunClock, settings: dict[str, Any]
) -> dict[str, Any]:
    import celery

    ratios = {}
    for name, stats in (
        ("timer_enqueued", results.timers.enqueued if results.timers else None),
        ("timer_started", results.timers.started if results.timers else None),
        ("timer_next_state", results.timers.next_state if results.timers else None),
        ("message_next_state", results.messages.next_state if results.messages else None),
    ):
        if stats is not None:
            for which in ("p50", "p99"):
                value = results.ratio(stats, which)
                ratios[f"{name}_{which}_over_bare_{which}"] = None if value is None else round(value, 2)
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "source": source_state(),
        **clock.figures(),
        "settings": {
            "workers": args.workers,
            "bare": args.bare,
            "bare_rate": args.bare_rate,
            "timers": args.timers,
            "spread": args.spread,
            "catchup": args.catchup,
            "catchup_spread": args.catchup_spread,
            "downtime": args.downtime,
            "messages": args.messages,
            "message_rate": args.message_rate,
            "warm_timers": args.warm_timers,
            "redis_db": args.redis_db,
            "record_db": args.record_db,
            **settings,
        },
        "warm_up_parked_per_second": round(results.warm_rate, 1),
        "bare": results.bare.as_dict() if results.bare else None,
        "timers": results.timers.as_dict() if results.timers else None,
        "catchup": results.catchup.as_dict() if results.catchup else None,
        "messages": results.messages.as_dict() if results.messages else None,
        "ratios": ratios,
        "goal": {"timer_enqueued_p99_seconds_at_most": GOAL_ENQUEUE_LAG_SECONDS},
        "goal_met": results.goal_met,
        "verified": results.verified,
        "errors": results.errors,
        "ok": results.verified and results.goal_met,
    }


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute and a half")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, -c 1 each (default 2)")
    parser.add_argument("--bare", type=int, default=None, help="bare Celery tasks (default 1,000)")
    parser.add_argument("--bare-rate", type=float, default=200.0, help="bare tasks sent per second (200)")
    parser.add_argument("--timers", type=int, default=None, help="timers in part 2 (default 10,000)")
    parser.add_argument("--spread", type=float, default=None, help="part 2's due times span (default 60 s)")
    parser.add_argument(
        "--timer-lead", type=float, default=None,
        help="seconds from the start of part 2 to its first due time (default: from the warm-up's parking rate)",
    )  # fmt: skip
    parser.add_argument("--catchup", type=int, default=None, help="timers in part 3 (default 5,000)")
    parser.add_argument(
        "--catchup-spread", type=float, default=None, help="part 3's due times span (default 10 s)"
    )
    parser.add_argument(
        "--downtime",
        type=float,
        default=None,
        help="scheduler restart after part 3's last due (default 20 s)",
    )
    parser.add_argument("--messages", type=int, default=None, help="message executions (default 500)")
    parser.add_argument("--message-rate", type=float, default=50.0, help="messages sent per second (50)")
    parser.add_argument("--warm-timers", type=int, default=None, help="warm-up timers (default 200)")
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help=f"an existing database to connect to ({DEFAULT_PG_URL})"
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"a Redis server, no db, whose dbs the bench flushes (e.g. {DEFAULT_REDIS_URL}); default: one of its own",
    )
    parser.add_argument("--redis-db", type=int, default=9, help="the workers' Redis db, flushed (default 9)")
    parser.add_argument(
        "--record-db", type=int, default=10, help="db for the bare tasks' samples, flushed (default 10)"
    )
    parser.add_argument(
        "--force-redis",
        action="store_true",
        help="do not check that no other client uses the Redis dbs (at the start and while running)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON instead of the table")
    parser.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
    parser.add_argument(
        "--log-dir",
        metavar="DIR",
        help="keep the workers' and the scheduler's logs here (default: a temporary dir)",
    )
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: Any, small: Any, full: Any) -> Any:
        return value if value is not None else (small if quick else full)

    args.bare = pick(args.bare, 200, 1_000)
    args.timers = pick(args.timers, 1_000, 10_000)
    args.spread = pick(args.spread, 10.0, 60.0)
    args.catchup = pick(args.catchup, 500, 5_000)
    args.catchup_spread = pick(args.catchup_spread, 5.0, 10.0)
    args.downtime = pick(args.downtime, 5.0, 20.0)
    args.messages = pick(args.messages, 100, 500)
    args.warm_timers = pick(args.warm_timers, 100, 200)
    if min(args.bare, args.timers, args.catchup, args.messages, args.warm_timers, args.workers) < 1:
        parser.error("sizes and --workers must be >= 1")
    if min(args.bare_rate, args.message_rate) <= 0 or args.spread < 0 or args.catchup_spread < 0:
        parser.error("rates must be > 0 and spreads >= 0")
    if args.redis_db == args.record_db:
        parser.error("--redis-db and --record-db must differ")
    return args


def run(args: argparse.Namespace, results: Results, work_dir: Path, settings_out: dict[str, Any]) -> None:
    with redis_base_url(args.redis_url, work_dir) as base:
        run_on(args, results, work_dir, settings_out, base)


def run_on(
    args: argparse.Namespace, results: Results, work_dir: Path, settings_out: dict[str, Any], base: str
) -> None:
    broker_url, record_url = f"{base}/{args.redis_db}", f"{base}/{args.record_db}"
    # Before anything imports smq's Celery app: this process publishes (bare tasks, message
    # continuations through Operations) to the workers' db and nowhere else.
    os.environ["SMQ_BROKER_URL"] = broker_url
    broker, records = redis.Redis.from_url(broker_url), redis.Redis.from_url(record_url)
    global _guard
    if not args.force_redis:
        _guard = RedisGuard(broker, (args.redis_db, args.record_db))
        for _ in range(START_CHECKS):  # a test run may be between two tests: look for a few seconds
            _guard.check(at_start=True)
            time.sleep(1.0)
    with (
        flushed_redis(broker, records, keep=_intruded),
        fresh_database(args.pg_url, f"smq_bench_wait_{os.getpid()}") as database_url,
        contextlib.ExitStack() as stack,
    ):
        from smq import Operations, QueueClient, Repository, Settings
        from smq.distributed.app import app

        os.environ["SMQ_DATABASE_URL"] = database_url
        settings = Settings.from_env()
        settings_out.update(
            scheduler_interval=settings.scheduler_interval,
            park_after=settings.park_after,
            wake_grace=settings.wake_grace,
        )
        repo = Repository.open(database_url)
        stack.callback(repo.close)
        for machine, path in (
            (TIMER_MACHINE, TIMER_FILE),
            (CATCHUP_MACHINE, TIMER_FILE),
            (WARM_TIMER_MACHINE, TIMER_FILE),
            (MESSAGE_MACHINE, MESSAGE_FILE),
            (WARM_MESSAGE_MACHINE, MESSAGE_FILE),
        ):
            repo.put_definition(machine, json.loads(path.read_text()))
        client = QueueClient(repo, app=app)
        operations = Operations(repo, settings)
        env = {**os.environ, "SMQ_DATABASE_URL": database_url, "SMQ_BROKER_URL": broker_url,
               "SMQ_HANDLERS": str(HANDLERS_FILE), "SMQ_BENCH_RECORD_URL": record_url}  # fmt: skip
        workers = Workers(args.workers, env, work_dir)
        scheduler_env = {k: v for k, v in env.items() if k not in ("SMQ_HANDLERS", "SMQ_BENCH_RECORD_URL")}
        scheduler = Scheduler(scheduler_env, work_dir)
        stack.callback(workers.stop)  # the scheduler first, then the workers (LIFO)
        stack.callback(scheduler.stop)
        log(f"starting {args.workers} worker(s) and `smq scheduler`; logs in {work_dir}")
        workers.start()
        scheduler.start()
        workers.wait_ready(app)
        log("workers ready; warming up")
        results.warm_rate = warm_up(
            app, repo, client, operations, records, broker, workers, scheduler, args, settings.park_after
        )
        alive = all_alive(workers, scheduler)
        log(f"part 1: bare Celery, {args.bare:,} tasks at {args.bare_rate:g}/s")
        results.bare = run_bare(app, records, broker, args.bare, args.bare_rate, alive)
        log(f"  p50 {_ms(results.bare.latency.p50)} ms, p99 {_ms(results.bare.latency.p99)} ms")
        log(f"part 2: {args.timers:,} timers due over {args.spread:g}s")
        results.timers = run_timers(
            args, repo, client, broker, workers, scheduler, results.warm_rate, settings.park_after
        )
        log(
            f"  enqueued − due p99 {_ms(results.timers.enqueued.p99)} ms, next state − due p99 "
            f"{_ms(results.timers.next_state.p99)} ms"
        )
        log(f"part 3: catch-up, {args.catchup:,} timers")
        results.catchup = run_catchup(
            args, repo, client, broker, workers, scheduler, results.warm_rate, settings.park_after
        )
        log(
            f"  drained {results.catchup.from_spawn.get('last_finished', float('nan')):.1f}s after the restart"
        )
        log(f"part 4: {args.messages:,} messages at {args.message_rate:g}/s")
        results.messages = run_messages(args, repo, client, operations, broker, workers, scheduler)
        log(f"  send → next state p99 {_ms(results.messages.next_state.p99)} ms")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    clock = RunClock()
    results = Results()
    settings: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        directory = work_directory(stack, args.log_dir, "smq-bench-wait-")
        with errors_recorded(results.errors, KeyboardInterrupt, Interrupted):
            run(args, results, directory, settings)
    report = build_report(args, results, clock, settings)
    emit_report(report, args.save, args.json, lambda: print_report(report, results, args))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
