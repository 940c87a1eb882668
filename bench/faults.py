"""Self-healing soak (issue 16): N executions under one fault at a time, counted.

Each fault runs on fresh servers of its own: a private PostgreSQL cluster (initdb on a free port; the
database ``smq_bench_faults_<pid>`` created in it and migrated with ``smq.repository.database.upgrade``)
and a private ``redis-server`` (append-only file, fsync every second, no eviction: as
docker-compose.yml runs it). On them run the documented processes and nothing else:

- ``--workers`` K (default 2) ``celery -A smq worker -Q critical,default,low -c C`` (C = ``--concurrency``,
  default 2 pool processes each), ``SMQ_HANDLERS=bench/bench_handlers.py``;
- one ``smq scheduler`` (timers, crash recovery, and healing what the broker lost);
- ``smq start fault-soak --inputs FILE.jsonl --name-prefix P``, which enqueues the N executions.

The machine (``definitions/fault_soak.json``) is Task, Wait ``--wait`` seconds (2; below
``SMQ_PARK_AFTER``, so it waits inline in the pool process), Choice, Task, Succeed. Both Tasks are
``smq_bench.fault_step``, which appends ``start`` when called and ``end`` just before it returns (one
O_APPEND line each, with a call id) to a calls log. A Task of one execution whose call logged ``end`` and
that is called again afterwards is a *completed Task run twice*; a call cut by a SIGKILL (``start``
without ``end``) that runs again is legitimate and only counted in the notes.

Then the fault (one per run, mid-batch = once a quarter of the executions have finished), and the
bench waits until every execution is final, or until nothing has finished for ``--settle`` seconds
(120) and the fault ended at least as long ago: what is not final then is *stuck*. Counted per fault:
SUCCEEDED, stuck, duplicate executions (names with more than one execution row), completed Tasks run
twice, dead letters (by reason), commands needed (always 0: the bench never runs a repair command,
only the processes above), the time from ``smq start`` to the last execution's end, and for the
Redis-emptied faults the seconds from Redis answering again to the last execution's end.

Goals (the exit status is 1 if any is missed): N SUCCEEDED, 0 stuck, 0 duplicated, 0 completed Tasks
repeated, no worker or scheduler died that the bench did not kill; after Redis restarted empty,
everything done within 60 s of Redis coming back; for bad messages, one dead letter per bad message.
For ``start-kill`` the N names are only those the killed ``smq start`` claimed before it died: names it
never read into the ledger cannot be known to anything but a re-run (they are reported as "never
claimed"; the goal is judged on the claimed ones).

Usage::

    python bench/faults.py                            # 2,000 executions x every fault (hours on 2 CPUs)
    python bench/faults.py --quick                    # 200 executions per fault
    python bench/faults.py --executions 500 --faults none,redis-empty,purge --json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import pickle
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import support
from support import (
    CeleryWorkers,
    PrivatePostgres,
    PrivateRedis,
    console,
    emit_report,
    fresh_database,
    load_average,
    load_line,
    log,
    stop_processes,
    tail,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HANDLERS_FILE = BENCH / "bench_handlers.py"
DEFINITION_FILE = BENCH / "definitions" / "fault_soak.json"
MACHINE = "fault-soak"
PREFIX = "soak-"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
MID_BATCH = 0.25  # a mid-batch fault strikes once this share of the executions has finished
PG_DOWN_SECONDS = 10.0
GOAL_AFTER_REDIS_BACK = 60.0
LINGER_SECONDS = 5.0
BAD_MESSAGES = 2  # garbage, and a kombu envelope with a pickle body

FAULTS: dict[str, str] = {
    "none": "none (baseline)",
    "pool-kill": "SIGKILL of every pool child mid-batch",
    "worker-kill": "SIGKILL of a whole worker mid-batch, a replacement started",
    "redis-restart": "Redis SIGKILLed mid-batch, restarted on its AOF",
    "redis-empty": "Redis restarted EMPTY mid-batch (AOF removed)",
    "redis-empty-early": "Redis emptied right after `smq start`",
    "purge": "`celery -A smq purge -f` mid-batch",
    "pg-stop": f"PostgreSQL stopped {PG_DOWN_SECONDS:.0f} s mid-batch",
    "start-kill": "`smq start` SIGKILLed half-way through its fan-out",
    "bad-messages": "garbage + a pickle envelope put next in the queue mid-batch",
}
REDIS_EMPTIED = ("redis-empty", "redis-empty-early")

# ------------------------------------------------------------------ processes

spawn = support.spawn_tracked  # killed with its session at exit if still running


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every `finally`, so the servers and processes are stopped."""


def _interrupt(signum: int, _frame: Any) -> None:
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(f"interrupted by signal {signum}")


def smq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smq.cli", *args]


# ------------------------------------------------------------------ results


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


# ------------------------------------------------------------------ database reads


class Reads:
    """Plain SQL on the fault's database (a PostgreSQL stopped meanwhile answers None)."""

    def __init__(self, url: str):
        from sqlalchemy import create_engine

        self.engine = create_engine(url, pool_pre_ping=True, pool_size=1, max_overflow=0)

    def rows(self, sql: str, **params: Any) -> list[Any] | None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as connection:
                return list(connection.execute(text(sql), params))
        except SQLAlchemyError:
            return None

    def statuses(self) -> dict[str, int] | None:
        found = self.rows(
            "SELECT status, count(*) FROM smq_executions WHERE state_machine_id = :m GROUP BY status",
            m=MACHINE,
        )
        return None if found is None else {status: int(count) for status, count in found}

    def finished(self) -> int | None:
        statuses = self.statuses()
        return None if statuses is None else sum(statuses.get(status, 0) for status in TERMINAL)

    def claimed(self) -> int | None:
        found = self.rows("SELECT count(*) FROM smq_enqueued WHERE state_machine_id = :m", m=MACHINE)
        return None if found is None else int(found[0][0])

    def close(self) -> None:
        self.engine.dispose()


def completed_repeats(calls_log: Path) -> tuple[int, int]:
    """(completed Tasks run again, interrupted calls run again), per (execution, state), from the log.

    The log is in the order the lines were written (O_APPEND). A (execution, state) whose call logged
    ``end`` and that logged a ``start`` after it ran a completed Task twice; one whose call logged only
    ``start`` (cut by a SIGKILL) before another call is an interrupted call run again."""
    ended: set[tuple[str, str]] = set()
    open_calls: dict[tuple[str, str], set[str]] = {}
    repeated: set[tuple[str, str]] = set()
    interrupted: set[tuple[str, str]] = set()
    try:
        lines = calls_log.read_text().splitlines()
    except FileNotFoundError:
        return 0, 0
    for line in lines:
        fields = line.split()
        if len(fields) != 5:
            continue
        kind, execution, state, call, _pid = fields
        key = (execution, state)
        if kind == "start":
            if key in ended:
                repeated.add(key)
            elif open_calls.get(key):
                interrupted.add(key)
            open_calls.setdefault(key, set()).add(call)
        elif kind == "end":
            open_calls.get(key, set()).discard(call)
            ended.add(key)
    return len(repeated), len(interrupted)


# ------------------------------------------------------------------ faults


def bad_envelopes() -> list[str]:
    """Raw garbage, then a kombu envelope of smq's task whose body claims to be a pickle (its body is a
    harmless pickled tuple: nothing here may ever be unpickled by a worker)."""
    task_id = str(uuid.uuid4())
    body = base64.b64encode(pickle.dumps(((), {}, {}), protocol=2)).decode()
    envelope = {
        "body": body,
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {
            "lang": "py", "task": "execute_state_machine", "id": task_id, "root_id": task_id,
            "parent_id": None, "group": None, "retries": 0, "argsrepr": "()", "kwargsrepr": "{}",
            "origin": "bench/faults.py",
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "default"}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        },
    }  # fmt: skip
    return ["not a kombu message {", json.dumps(envelope)]


class Run:
    """One fault on its own servers: PostgreSQL, Redis, the scheduler, the workers, `smq start`."""

    def __init__(self, fault: str, args: argparse.Namespace, directory: Path, stack: contextlib.ExitStack):
        self.fault, self.args, self.directory = fault, args, directory
        self.row = Row(fault, args.executions, expected=args.executions)
        self.calls_log = directory / "calls.log"
        self.killed: set[int] = set()  # pids the bench killed on purpose
        self.pg = PrivatePostgres()
        stack.callback(self.pg.destroy)
        self.pg.init()
        self.redis = PrivateRedis(directory / "redis")
        stack.callback(self.redis.stop)
        self.redis.start()
        self.stack = stack

    # -------------------------------------------------------------- setup

    def environment(self, database_url: str) -> dict[str, str]:
        """The processes' environment: no inherited SMQ_* variable, then the fault's servers."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
        env.update(
            SMQ_DATABASE_URL=database_url,
            SMQ_BROKER_URL=self.redis.url(0),
            SMQ_HANDLERS=str(HANDLERS_FILE),
            PYTHONUNBUFFERED="1",
        )
        return env

    def execute(self) -> Row:
        started = time.perf_counter()
        database_url = self.stack.enter_context(
            fresh_database(self.pg.url(), f"smq_bench_faults_{os.getpid()}")
        )
        self.env = self.environment(database_url)
        self.reads = Reads(database_url)
        self.stack.callback(self.reads.close)
        from smq.repository.repository import Repository

        repo = Repository.open(database_url)
        try:
            repo.put_definition(MACHINE, json.loads(DEFINITION_FILE.read_text()))
        finally:
            repo.close()
        inputs = self.directory / "inputs.jsonl"
        inputs.write_text(
            "".join(
                json.dumps({"n": index, "calls": str(self.calls_log), "wait": self.args.wait}) + "\n"
                for index in range(self.args.executions)
            )
        )
        self.scheduler = spawn(smq_command("scheduler"), self.env, self.directory / "scheduler.log")
        self.stack.callback(lambda: stop_processes([self.scheduler], 20.0, "scheduler pid"))
        self.wait_for_epoch()
        self.workers = CeleryWorkers(
            self.args.workers,
            self.env,
            self.directory,
            "faults",
            spawner=spawn,
            concurrency=self.args.concurrency,
        )
        self.stack.callback(lambda: self.workers.stop(20.0))
        self.workers.start()
        self.workers.wait_ready(self.control_app())
        try:
            self.run_fault(inputs)
            self.count()
        finally:
            self.row.wall_seconds = round(time.perf_counter() - started, 1)
        return self.row

    def control_app(self) -> Any:
        from celery import Celery

        return Celery("smq-bench-faults", set_as_current=False, broker=self.redis.url(0))

    def redis_client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis.url(0), socket_timeout=5)

    def wait_for_epoch(self, timeout: float = 60.0) -> None:
        """The scheduler has looked at the broker once (and set smq's epoch key): a loss from now on is
        one it can see. Enqueueing before that would look like a loss to it."""
        from smq.distributed.broker_contents import EPOCH_KEY

        client = self.redis_client()
        deadline = time.monotonic() + timeout
        try:
            while not client.exists(EPOCH_KEY):
                if self.scheduler.poll() is not None:
                    raise RuntimeError(f"smq scheduler exited: {tail(self.directory / 'scheduler.log')}")
                if time.monotonic() > deadline:
                    raise RuntimeError("smq scheduler did not set the broker's epoch key")
                time.sleep(0.2)
        finally:
            client.close()

    # -------------------------------------------------------------- the fault

    def run_fault(self, inputs: Path) -> None:
        args, row = self.args, self.row
        self.t0 = time.time()
        starter = spawn(
            smq_command("start", MACHINE, "--inputs", str(inputs), "--name-prefix", PREFIX),
            self.env,
            self.directory / "smq-start.log",
        )
        fault_start = fault_end = None
        if self.fault == "start-kill":
            half = args.executions // 2
            while (self.reads.claimed() or 0) < half and starter.poll() is None:
                time.sleep(0.002)
            fault_start = time.time()
            if starter.poll() is None:
                starter.kill()
                self.killed.add(starter.pid)
            starter.wait()
            fault_end = time.time()
            claimed = self.reads.claimed() or 0
            self.target = claimed  # names never claimed cannot start: do not wait for them
            held = support.queue_length(self.redis_client())
            row.notes.append(f"killed with {claimed:,} names claimed, {held:,} queued")
        else:
            code = starter.wait(timeout=600)
            if code != 0:
                raise RuntimeError(f"smq start exited {code}: {tail(self.directory / 'smq-start.log')}")
            if self.fault == "redis-empty-early":
                fault_start = time.time()
                self.redis.kill()
                self.redis.remove_data()
                self.redis_back = self.redis.start()
                self.redis_returned()
                fault_end = time.time()
            elif self.fault != "none":
                self.wait_finished(int(args.executions * MID_BATCH))
                fault_start = time.time()
                self.strike()
                fault_end = time.time()
        if fault_start is not None and fault_end is not None:
            row.fault_at_seconds = round(fault_start - self.t0, 1)
            row.fault_seconds = round(fault_end - fault_start, 1)
            log(f"  {self.fault}: struck at {row.fault_at_seconds:.1f}s, lasted {row.fault_seconds:.1f}s")
        self.settle(fault_end or time.time())
        self.linger()

    def strike(self) -> None:
        """The mid-batch faults."""
        if self.fault == "pool-kill":
            children = self.workers.child_pids()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.killed.update(children)
            self.row.notes.append(f"{len(children)} pool children killed")
        elif self.fault == "worker-kill":
            victim = self.workers.processes[0]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            self.killed.add(victim.pid)
            name = f"faults-replacement-{os.getpid()}"
            replacement = spawn(
                support.worker_command(name, self.args.concurrency), self.env, self.directory / f"{name}.log"
            )
            self.workers.processes.append(replacement)
            self.workers.names.append(name)
        elif self.fault == "redis-restart":
            self.redis.kill()
            self.redis.start()
        elif self.fault == "redis-empty":
            self.redis.kill()
            self.redis.remove_data()
            self.redis_back = self.redis.start()
            self.redis_returned()
        elif self.fault == "purge":
            done = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "smq", "purge", "-f", "-Q", "critical,default,low"],
                cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"celery purge exited {done.returncode}: {done.stderr[-1000:]}")
            self.row.notes.append(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "purged")
        elif self.fault == "pg-stop":
            self.pg.stop()
            time.sleep(PG_DOWN_SECONDS)
            self.pg.start()
        elif self.fault == "bad-messages":
            client = self.redis_client()
            try:
                for raw in bad_envelopes():
                    # RPUSH: at the consuming end of kombu's list (it LPUSHes and BRPOPs), so the bad
                    # messages are taken next, mid-batch, not behind the whole backlog.
                    client.rpush("default", raw)
            finally:
                client.close()
        else:
            raise ValueError(f"unknown fault {self.fault!r}")

    # -------------------------------------------------------------- waiting and counting

    def redis_returned(self) -> None:
        """Redis answers again, empty: what is left to run, and the least time it needs."""
        finished = self.reads.finished() or 0
        slots = self.args.workers * self.args.concurrency
        self.row.drain_floor_seconds = round((self.args.executions - finished) * self.args.wait / slots, 1)
        self.row.notes.append(f"{finished:,} finished when Redis came back")

    def check_healed(self, now: float) -> None:
        """After Redis came back empty: the moment every name is either started (an execution exists)
        or queued again."""
        if getattr(self, "redis_back", None) is None or self.row.healed_after_redis_back_seconds is not None:
            return
        statuses = self.reads.statuses()
        if statuses is None:
            return
        client = self.redis_client()
        try:
            queued = sum(support.queue_length(client, queue) for queue in support.QUEUE_KEYS)
        finally:
            client.close()
        if sum(statuses.values()) + queued >= self.args.executions:
            self.row.healed_after_redis_back_seconds = round(now - self.redis_back, 1)

    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        named = dict(zip(self.workers.names, self.workers.processes, strict=True))
        named["scheduler"] = self.scheduler
        return named

    def note_deaths(self) -> None:
        for name, process in self.processes().items():
            if process.poll() is not None and process.pid not in self.killed and name not in self.row.died:
                self.row.died.append(name)
                log(f"  {name} exited with {process.returncode}; see {self.directory}")

    def wait_finished(self, target: int) -> None:
        last, last_change = -1, time.monotonic()
        while True:
            done = self.reads.finished()
            if done is not None and done >= target:
                return
            if done != last:
                last, last_change = done or 0, time.monotonic()
            self.note_deaths()
            if time.monotonic() - last_change > self.args.settle:
                raise RuntimeError(f"stuck at {done}/{target} before the fault")
            time.sleep(0.2)

    def settle(self, fault_end: float) -> None:
        """Until every execution is final, or nothing finished for `settle` seconds and the fault ended
        at least that long ago."""
        settle, expected = self.args.settle, getattr(self, "target", self.args.executions)
        last, last_change, last_report = -1, time.time(), 0.0
        while True:
            now = time.time()
            done = self.reads.finished()
            if done is not None and done != last:
                last, last_change = done, now
            with contextlib.suppress(Exception):
                self.check_healed(now)
            if done is not None and done >= expected:
                return
            self.note_deaths()
            if now - fault_end >= settle and now - last_change >= settle:
                log(f"  nothing finished for {settle:.0f}s: stop waiting at {last:,}/{expected:,}")
                return
            if now - last_report >= 15:
                log(f"  {self.fault}: {max(last, 0):,}/{expected:,} final")
                last_report = now
            time.sleep(1.0)

    def linger(self) -> None:
        """After the last execution: until the broker holds nothing (a bad message not yet taken would
        be missed), at most `settle` seconds, then LINGER_SECONDS more, so that a process dying on
        what it took last, or a dead letter being written, is seen."""
        deadline = time.monotonic() + self.args.settle
        client = self.redis_client()
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if sum(support.queue_length(client, queue) for queue in support.QUEUE_KEYS) == 0:
                        break
                self.note_deaths()
                time.sleep(0.5)
        finally:
            client.close()
        time.sleep(LINGER_SECONDS)
        self.note_deaths()

    def count(self) -> None:
        row, reads = self.row, self.reads
        for _ in range(30):  # a fault may leave the database just restarted
            statuses = reads.statuses()
            if statuses is not None:
                break
            time.sleep(1)
        else:
            raise RuntimeError("the database does not answer after the run")
        row.statuses = statuses
        row.succeeded = statuses.get("SUCCEEDED", 0)
        if self.fault == "start-kill":
            row.expected = reads.claimed() or 0
            row.never_claimed = self.args.executions - row.expected
            if row.never_claimed:
                row.notes.append(f"{row.never_claimed:,} names never claimed (need `smq start` re-run)")
        final = sum(statuses.get(status, 0) for status in TERMINAL)
        row.stuck = row.expected - final
        duplicated = reads.rows(
            "SELECT count(*) FROM (SELECT name FROM smq_executions WHERE state_machine_id = :m "
            "GROUP BY name HAVING count(*) > 1) d",
            m=MACHINE,
        )
        row.duplicates = int(duplicated[0][0]) if duplicated else 0
        dead = (
            reads.rows("SELECT reason, count(*) FROM smq_dead_letters GROUP BY reason ORDER BY reason") or []
        )
        row.dead_letters = {reason: int(count) for reason, count in dead}
        client = self.redis_client()
        try:
            spooled = sum(
                int(client.llen(key)) for key in client.scan_iter(match="smq:dead-letters:*", count=1000)
            )
            unacked = int(client.hlen("unacked"))
        finally:
            client.close()
        if unacked:
            row.notes.append(
                f"{unacked} message(s) left unacknowledged (redelivered after the visibility timeout)"
            )
        if spooled:
            row.notes.append(f"{spooled} dead letter(s) still spooled in Redis")
        row.completed_repeated, row.interrupted_rerun = completed_repeats(self.calls_log)
        if row.interrupted_rerun:
            row.notes.append(f"{row.interrupted_rerun} interrupted Task call(s) ran again (legitimate)")
        ended = reads.rows(
            "SELECT max(stop_time), count(*) FROM smq_executions WHERE state_machine_id = :m AND status = ANY(:s)",
            m=MACHINE,
            s=list(TERMINAL),
        )
        last_stop = ended[0][0] if ended else None
        if last_stop is not None and row.stuck == 0 and row.expected:
            row.all_done_seconds = round(last_stop.timestamp() - self.t0, 1)
            back = getattr(self, "redis_back", None)
            if back is not None:
                row.after_redis_back_seconds = round(last_stop.timestamp() - back, 1)
        not_succeeded = {status: n for status, n in statuses.items() if status != "SUCCEEDED"}
        if not_succeeded:
            row.notes.append(
                "not SUCCEEDED: " + ", ".join(f"{s} {n}" for s, n in sorted(not_succeeded.items()))
            )
        self.note_deaths()


# ------------------------------------------------------------------ report


def settings_used(args: argparse.Namespace) -> dict[str, Any]:
    """What the processes ran with: the bench's sizes and smq's settings as the workers read them (no
    SMQ_* variable is set besides the servers and the handlers, so these are smq's defaults)."""
    from smq.settings import Settings

    env = {key: value for key, value in os.environ.items() if not key.startswith("SMQ_")}
    settings = Settings.from_env(env)
    return {
        "executions": args.executions,
        "workers": args.workers,
        "pool_processes_per_worker": args.concurrency,
        "wait_seconds": args.wait,
        "settle_seconds": args.settle,
        "mid_batch_at_finished_share": MID_BATCH,
        "SMQ_PARK_AFTER": settings.park_after,
        "SMQ_STRANDED_AFTER": settings.stranded_after,
        "SMQ_LEASE_SECONDS": settings.lease_seconds,
        "SMQ_VISIBILITY_TIMEOUT": settings.visibility_timeout,
        "SMQ_WAKE_GRACE": settings.wake_grace,
        "SMQ_MAX_RETRIES": settings.max_retries,
        "SMQ_RETRY_DELAYS": list(settings.retry_delays),
        "SMQ_OUTAGE_BUDGET": settings.outage_budget,
        "SMQ_SCHEDULER_INTERVAL": settings.scheduler_interval,
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def redis_back_text(row: dict[str, Any]) -> str:
    if row["fault"] not in REDIS_EMPTIED:
        return ""
    return (
        f"{_seconds(row['after_redis_back_seconds'])} (requeued {_seconds(row['healed_after_redis_back_seconds'])}, "
        f"floor {_seconds(row['drain_floor_seconds'])})"
    )


def print_tables(report: dict[str, Any]) -> None:
    from rich.table import Table

    out = console(200)
    table = Table(
        title=f"self-healing soak: {report['settings']['executions']:,} executions per fault",
        title_justify="left",
    )
    for column, justify in (
        ("fault", "left"), ("SUCCEEDED", "right"), ("stuck after 2 min", "right"), ("duplicate executions", "right"),
        ("completed Tasks run twice", "right"), ("dead letters", "right"), ("commands needed", "right"),
        ("all done (s)", "right"), ("after Redis back (s)", "right"), ("goal", "left"), ("notes", "left"),
    ):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in report["rows"]:
        dead = ", ".join(f"{reason} {n}" for reason, n in row["dead_letters"].items())
        table.add_row(
            FAULTS[row["fault"]],
            f"{row['succeeded']:,}/{row['expected']:,}",
            str(row["stuck"]),
            str(row["duplicates"]),
            str(row["completed_repeated"]),
            f"{row['dead_letters_total']}" + (f" ({dead})" if dead else ""),
            str(row["commands"]),
            _seconds(row["all_done_seconds"]),
            redis_back_text(row),
            "met" if not row["goal_missed"] else "MISSED: " + "; ".join(row["goal_missed"]),
            "; ".join(row["notes"] + ([row["error"]] if row["error"] else [])),
        )
    out.print(table)
    settings = ", ".join(f"{key}={value}" for key, value in report["settings"].items())
    out.print(f"settings: {settings}")
    out.print(
        "commands needed: 0 in every row by construction: the bench runs the workers, `smq scheduler` and "
        "`smq start` only, never a repair command (`smq recover`, `smq dead retry`, a re-run of `smq start`)."
    )
    out.print(f"{load_line(report)}; {'all goals met' if report['ok'] else 'GOAL MISSED'}")


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--executions", type=int, default=None, help="executions per fault (2,000; --quick 200)"
    )
    parser.add_argument("--quick", action="store_true", help="200 executions per fault")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, in this order by default: {','.join(FAULTS)}",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery workers (2)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (2)")
    parser.add_argument("--wait", type=float, default=2.0, help="the machine's Wait, seconds (2)")
    parser.add_argument(
        "--settle",
        type=float,
        default=120.0,
        help="stuck = not final after this long without progress (120 s)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
    parser.add_argument(
        "--log-dir", metavar="DIR", help="keep every fault's logs here (default: a temporary dir)"
    )
    args = parser.parse_args(argv)
    if args.executions is None:
        args.executions = 200 if args.quick else 2_000
    args.fault_list = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = [name for name in args.fault_list if name not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    if args.executions < 4 or args.workers < 1 or args.concurrency < 1:
        parser.error("--executions must be >= 4, --workers and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    started = time.perf_counter()
    load_start = os.getloadavg()
    rows: list[Row] = []
    errors: list[str] = []
    with contextlib.ExitStack() as outer:
        if args.log_dir:
            base = Path(args.log_dir)
            base.mkdir(parents=True, exist_ok=True)
        else:
            base = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="smq-bench-faults-")))
        for fault in args.fault_list:
            log(f"{fault}: {FAULTS[fault]} ({args.executions:,} executions; logs in {base / fault})")
            directory = base / fault
            directory.mkdir(parents=True, exist_ok=True)
            row = Row(fault, args.executions, expected=args.executions)
            try:
                with contextlib.ExitStack() as stack:
                    run = Run(fault, args, directory, stack)
                    row = run.row
                    run.execute()
            except (Exception, KeyboardInterrupt, Interrupted) as exc:
                row.error = f"{type(exc).__name__}: {exc}"
                errors.append(f"{fault}: {row.error}")
                log(f"{fault} aborted:\n{traceback.format_exc()}")
                if isinstance(exc, KeyboardInterrupt | Interrupted):
                    rows.append(row)
                    break
            rows.append(row)
            missed = row.misses()
            log(f"  {fault}: {row.succeeded:,}/{row.expected:,} SUCCEEDED; {'; '.join(missed) or 'goal met'}")
    import celery

    report = {
        "python": platform.python_version(),
        "celery": celery.__version__,
        "cpus": os.cpu_count(),
        "source": support.source_state(),
        "load_average": load_average(load_start),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "settings": settings_used(args),
        "rows": [row.as_dict() for row in rows],
        "errors": errors,
        "ok": bool(rows) and len(rows) == len(args.fault_list) and not any(row.misses() for row in rows),
    }
    emit_report(report, args.save, args.json, lambda: print_tables(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
