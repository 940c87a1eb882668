"""One fault of bench/faults.py on fresh servers of its own: a private PostgreSQL and redis-server, the
workers, ``smq scheduler`` and ``smq start``; the fault struck (mid-batch, or right after ``smq
start``), then the bench waits until every execution is final or nothing moves, and counts."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.paths import HANDLERS_FILE, ROOT
from harness.processes import spawn_tracked, stop_processes, tail
from harness.progress import log
from harness.queues import queue_length, queued
from harness.servers import PrivatePostgres, PrivateRedis, fresh_database
from harness.workers import CeleryWorkers, worker_command

from scenarios.faults.catalogue import (
    DEFINITION_FILE,
    LINGER_SECONDS,
    MACHINE,
    MID_BATCH,
    PG_DOWN_SECONDS,
    PREFIX,
    TERMINAL,
    bad_envelopes,
)
from scenarios.faults.counting import Reads, completed_repeats
from scenarios.faults.results import Row


def smq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "smq.cli", *args]


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
        from smq import Repository

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
        self.scheduler = spawn_tracked(smq_command("scheduler"), self.env, self.directory / "scheduler.log")
        self.stack.callback(lambda: stop_processes([self.scheduler], 20.0, "scheduler pid"))
        self.wait_for_epoch()
        self.workers = CeleryWorkers(
            self.args.workers,
            self.env,
            self.directory,
            "faults",
            spawner=spawn_tracked,
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
        starter = spawn_tracked(
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
            held = queue_length(self.redis_client())
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
            replacement = spawn_tracked(
                worker_command(name, self.args.concurrency), self.env, self.directory / f"{name}.log"
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
            queued_now = queued(client)
        finally:
            client.close()
        if sum(statuses.values()) + queued_now >= self.args.executions:
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
                    if queued(client) == 0:
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
