"""Distributed execution on Celery workers over Redis: bare Celery vs smq, leader publishing, leader memory.

Everything runs in one invocation, against one Redis server and one fresh PostgreSQL database
(``smq_bench_dist_<pid>``, created next to ``--pg-url``'s, migrated with
``smq.repository.database.upgrade``, dropped at the end). ``--workers`` (default 2) Celery workers are
started by the script as subprocesses, each exactly
``celery -A smq worker -Q critical,default,low -c C --pool prefork`` (plus ``-n`` and ``-l``; C is
``--concurrency``, by default Celery's own default, one pool child per CPU, as the documented worker
command runs; ``--concurrency 1`` serialises each worker: a task's waits leave its CPU idle), with
cwd = the repository, ``SMQ_BROKER_URL`` = Redis db ``--redis-db`` (default 13),
``SMQ_DATABASE_URL`` = the fresh database and ``SMQ_HANDLERS`` = ``bench/bench_handlers.py``, which
registers a no-op task on ``smq.distributed.app.app``. They are terminated at the end. Redis db
``--redis-db`` and the staging db ``--staging-db`` (default 14) are flushed at the start and at the end.

Releasing a backlog at once: each round of parts 1 and 2 publishes its messages to the staging db,
where no worker listens, checks them (``LLEN`` = N), then moves them into the workers' db with one
``MOVE`` of the queue key. Redis wakes the workers' blocked ``BRPOP`` on that key, so all K workers see
the whole backlog at the same moment and no publishing competes with the workers for the 2 CPUs.

Pairs: parts 1 and 2 alternate (each pair followed by a round of part 2b), ``--pairs`` P times (default 5; 2 with ``--quick``): bare round 1,
smq round 1, bare round 2, smq round 2, ... each round with its own N tasks, staged and released as
above. A shared machine's speed drifts over minutes, so two single runs one after the other put that
drift straight into their ratio; a pair's two rounds run back to back and see about the same machine.
Each pair gives a ratio smq_i / bare_i, and the figure judged is the median of the P paired ratios
(for an even P, the mean of the two middle ones). The table also shows every pair's two rates and
ratio, the median of each part's rates, and the details of the median pair's rounds (for an even P,
the pair with the lower middle ratio); the JSON report's ``bare`` and ``smq`` are those rounds,
``smq_over_bare`` the median paired ratio, and ``pairs`` lists every pair.

1. **Bare Celery**: ``--tasks`` N (default 5,000) no-op tasks (``smq_bench.noop``: one Redis ``INCR``,
   no result backend) sent with ``app.send_task`` and released together, on a counter key of the
   round's own. The task that brings the counter to 1 stores its wall time, the one that brings it to
   N stores its own: tasks/s = (N - 1) / (last - first). Verified: the counter ends at exactly N, the
   queue and the unacked set are empty.
2. **smq**: the same N executions of ``definitions/pass3.json`` (3 Pass states) published with
   ``QueueClient.enqueue_many`` (the enqueue ledger in PostgreSQL, ``group()`` chunks of 500), run by
   ``execute_state_machine`` on the same workers. Round i runs its own state machine,
   ``bench-pass3-<i>`` (all put with the pass3 definition before the workers start), so what is
   counted and checked is that round's executions only. Executions/s = N / (latest ``stop_time`` -
   earliest ``start_time``) of that state machine, read from ``smq_executions``. Verified: exactly N
   executions of that state machine, all SUCCEEDED with the output AWS gives, ``history_length`` 3
   and 3 history rows each, no dead letters in the database, queue and unacked set empty.
   Goal: the median paired ratio smq/bare >= 0.5, with every round of both parts verified (one round
   that fails verification fails the result).
   Before the first pair, each worker is warmed up (20 tasks of each kind per worker, not timed, on
   another counter and another state machine): every pool child must have taken a no-op task.
2b. **A task that writes once** (context, not judged): right after each pair's smq round, N tasks
   ``smq_bench.insert_row`` that each INSERT one row (an id and the pass3 input as JSONB, one
   autocommit statement, server-side prepared) into ``smq_bench_rows`` of the bench database and then
   count as the no-op does; tasks/s as part 1, verified as part 1 plus exactly N rows. Reported: the
   median over the rounds of insert_i / bare_i (the most any design that records each task's outcome
   with one durable PostgreSQL write could reach against the no-op here) and of smq_i / insert_i (what
   smq keeps of that), with the same CPU breakdown.
   After the last pair the workers are stopped: parts 3 and 4 publish to the staging db with nobody
   consuming.
3. **Leader publishing**: ``--sources`` M (default 20,000) SUCCEEDED executions are COPY-loaded into
   ``smq_executions``; ``smq.distributed.leader.fan_out`` (keyset pages of the sources, ledger claims,
   ``group()`` chunks of 500) publishes one chained execution per source, timed from the call to its
   return. Then the same payloads (built before the clock starts) are published by a plain loop of
   ``app.send_task`` from one producer. After each, the queue must hold exactly M messages; it is
   deleted between the two. ``--rounds`` R repeats the pair (the ledger is cleared in between) and
   keeps each side's best. Goal: leader/plain >= 0.8.
4. **Leader memory**: ``smq leader --filter state_machine_id=SRC --target DST --json`` (the CLI, in
   distributed mode) runs as a subprocess over 10,000 and then 200,000 COPY-loaded sources. Its peak
   RSS is the kernel's ``VmHWM`` read from ``/proc/self/status`` by the child itself at exit (an
   ``atexit`` hook in a small ``python -c`` wrapper around ``smq.cli.main``), cross-checked by polling
   ``/proc/<pid>/status`` every 50 ms. The CLI must exit 0, report every source enqueued, and the
   queue must hold that many messages. Goal: peak RSS grows < 50 MB from 10k to 200k sources.

For context (not judged): parts 1 and 2 report, for the median pair's two rounds, the CPU time used
while the backlog drained, per task, for the pool children, the workers' main processes, the
PostgreSQL backends connected to the bench database, redis-server, this script, and the whole
machine (from ``/proc``); the rest of the machine is whatever else runs there. The machine's 2 CPUs
are shared by all of them, so the throughput ratio follows the ratio of whole-machine CPU per task.
Part 2 also shows its write transactions per execution and the latency of a bare one-row autocommit
INSERT probed just before the round, and with them the commit-bound rate (K / (writes x commit
latency)). ``--py-spy PATH`` samples the pool children during part 2's first round (wall clock, waits
included) and prints where ``execute_state_machine``'s time goes; that round's figure, and so pair 1's
ratio, is perturbed by the sampling.

Usage::

    python bench/distributed.py                 # table on stdout, progress on stderr
    python bench/distributed.py --json          # machine-readable results
    python bench/distributed.py --quick         # small sizes: a minute's sanity check
    python bench/distributed.py --tasks 10000 --sources 50000 --workers 2 --skip-memory
    python bench/distributed.py --pairs 5 --skip-memory    # more pairs for a steadier median ratio
    python bench/distributed.py --skip-memory --py-spy "$(command -v py-spy)"   # where part 2's time goes

Exit status: 0 when every result verified and every goal was met; 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import redis
import support
from sqlalchemy import text
from support import (
    DEFAULT_PG_URL,
    DEFAULT_REDIS_URL,
    MIB,
    QUEUE,
    CeleryWorkers,
    CpuMeter,
    CpuUsage,
    commit_latency_ms,
    console,
    copy_executions,
    delete_queues,
    emit_report,
    flushed_redis,
    fresh_database,
    leftover_messages,
    load1,
    load_average,
    load_line,
    log,
    postgres_pids,
    queue_length,
    redis_base_url,
    writes_per_execution,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HANDLERS_FILE = BENCH / "bench_handlers.py"
PASS3_FILE = BENCH / "definitions" / "pass3.json"
PASS3_INPUT = {"name": "bench"}
PASS3_OUTPUT = {"name": "bench", "step": 1}  # what AWS Step Functions returns for PASS3_INPUT
PASS3_STATES = 3

NOOP_TASK = "smq_bench.noop"  # registered by bench_handlers.py
INSERT_TASK = "smq_bench.insert_row"  # likewise: one PostgreSQL INSERT, then what noop does
SMQ_TASK = "execute_state_machine"
# The task's body as profiles name it (smq.tasks registers run_state_machine_task under SMQ_TASK).
TASK_FUNCTIONS = ("run_state_machine_task", "execute_state_machine")
MACHINE_PREFIX = "bench-pass3"  # part 2's timed executions: round i runs state machine bench-pass3-i
WARM_MACHINE = "bench-warm"  # part 2's warm-up (same definition, another id)
SOURCE_MACHINE = "bench-source"  # part 3's sources
CHAIN_TARGET = "bench-chain"  # what parts 3 and 4 chain over the sources

GOAL_SMQ_OVER_BARE = 0.5
GOAL_LEADER_OVER_PLAIN = 0.8
GOAL_MEMORY_GROWTH_MB = 50.0
WARMUP_PER_WORKER = 20
CHUNK_SIZE = 500  # fan_out's and enqueue_many's default group() size

# Runs the `smq` CLI in a child process and reports that process's own peak RSS when it exits.
LEADER_WRAPPER = """
import atexit, os, sys

def _report_peak():
    with open("/proc/self/status") as status:
        values = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
    with open(os.environ["SMQ_BENCH_RSS_FILE"], "w") as out:
        out.write(str(values.get("VmHWM", 0) * 1024))

atexit.register(_report_peak)
sys.argv = ["smq", *sys.argv[1:]]
from smq.cli import main
main()
"""


# ------------------------------------------------------------------ results


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
        return smq.rate / bare.rate if bare.rate else None

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
    ratios = [Results.pair_ratio(bottom, top) for top, bottom in zip(numerators, denominators, strict=False)]
    known = [ratio for ratio in ratios if ratio is not None]
    return statistics.median(known) if known else None


# ------------------------------------------------------------------ infrastructure


def make_app(broker_url: str) -> Any:
    """A Celery app with smq's configuration (celeryconfig) on `broker_url`; nothing else differs."""
    from celery import Celery

    app = Celery("smq-bench")
    app.config_from_object(os.environ.get("SMQ_CELERY_CONFIG", "celeryconfig"))
    app.conf.broker_url = broker_url
    return app


class Workers(CeleryWorkers):
    """K `celery -A smq worker` processes, each in its own session so they can be stopped by id."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path, concurrency: int = 1):
        super().__init__(count, env, log_dir, "bench", concurrency=concurrency)

    def meter(self, extra: dict[str, Callable[[], list[int]]]) -> CpuMeter:
        return CpuMeter({"pool children": self.child_pids, "worker mains": self.main_pids, **extra})


def release(staging: redis.Redis, target_db: int, expected: int) -> None:
    """Move the staged queue into the workers' db at once (MOVE wakes their blocked BRPOP)."""
    staged = staging.llen(QUEUE)
    if staged != expected:
        raise RuntimeError(f"{staged} messages staged in queue {QUEUE!r}, expected {expected}")
    if not staging.move(QUEUE, target_db):
        raise RuntimeError(f"MOVE {QUEUE} {target_db} refused: the workers' db already has that key")


def wait_for(progress: Callable[[], int], target: int, workers: Workers, label: str, poll: float) -> None:
    """Poll `progress()` until it reaches `target`; fail if a worker dies or nothing moves for a minute."""
    support.wait_for(progress, target, label, workers.check_alive, poll=poll, report_every=2.0, indent="")


# ------------------------------------------------------------------ py-spy (--py-spy)


class PySpy:
    """`py-spy record` on each pool child while part 2 drains: wall-clock samples (--idle, so time spent
    waiting for PostgreSQL or Redis counts), aggregated by function."""

    RATE = 200

    def __init__(self, executable: str, pids: list[int], out_dir: Path):
        self.executable, self.pids, self.out_dir = executable, pids, out_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self) -> None:
        for pid in self.pids:
            output = self.out_dir / f"py-spy-{pid}.txt"
            command = [
                self.executable, "record", "--pid", str(pid), "--rate", str(self.RATE), "--format", "raw",
                "--function", "--idle", "--nonblocking", "--output", str(output),
            ]  # fmt: skip
            log_file = open(self.out_dir / f"py-spy-{pid}.log", "wb")  # noqa: SIM115 (closed with the process)
            self.processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
            self.outputs.append(output)
            log_file.close()
        time.sleep(1.0)  # let py-spy attach before the clock starts

    def stop(self, executions: int) -> dict[str, Any]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return summarize_py_spy(self.outputs, self.RATE, executions)


def _short_frame(frame: str) -> str:
    """`func (/long/path/site-packages/pkg/mod.py:12)` -> `func (pkg/mod.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_py_spy(paths: list[Path], rate: int, executions: int, top: int = 30) -> dict[str, Any]:
    """Samples in execute_state_machine vs in Celery's task tracer vs waiting for a task, and the
    functions under execute_state_machine by inclusive time (ms per execution, % of the task's time)."""
    total = traced = in_task = 0
    inclusive: dict[str, int] = {}
    for path in paths:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, number = line.rpartition(" ")
            if not number.isdigit():
                continue
            samples = int(number)
            frames = stack.split(";")
            total += samples
            functions = [frame.partition(" (")[0].rsplit(".", 1)[-1] for frame in frames]  # qualname's tail
            if "trace_task" in functions:
                traced += samples
            start = next((i for i, f in enumerate(functions) if f in TASK_FUNCTIONS), None)
            if start is None:
                continue
            in_task += samples
            for key in {_short_frame(frame) for frame in frames[start:]}:
                inclusive[key] = inclusive.get(key, 0) + samples

    def ms(samples: int) -> float:
        return round(samples / rate / max(1, executions) * 1000, 3)

    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return {
        "rate_hz": rate,
        "samples": total,
        "ms_per_execution": {
            "in Celery's tracer (the task and its bookkeeping)": ms(traced),
            "  in execute_state_machine": ms(in_task),
            "  in the tracer around the task": ms(traced - in_task),
            "idle in the pool child (waiting to be handed a task)": ms(total - traced),
        },
        "inclusive_under_execute_state_machine": [
            {
                "function": name,
                "ms_per_execution": ms(count),
                "share": round(count / in_task, 4) if in_task else 0,
            }
            for name, count in ranked
        ],
    }


# ------------------------------------------------------------------ parts 1 and 2: throughput


def smq_machine(number: int) -> str:
    """Part 2's round `number` has a state machine of its own, so counting its executions counts
    only that round's."""
    return f"{MACHINE_PREFIX}-{number}"


def service_processes(repo: Any, client: redis.Redis) -> dict[str, Callable[[], list[int]]]:
    """PostgreSQL backends connected to the bench database, and redis-server, for the CPU meter (a
    server on another host, or one whose /proc is not ours, simply counts 0)."""
    redis_pid = int(client.info("server").get("process_id", 0))
    return {
        "postgres backends": postgres_pids(repo),
        "redis-server": lambda: [redis_pid] if redis_pid else [],
        "this script": lambda: [os.getpid()],
    }


def noop_counter(client: redis.Redis, key: str) -> int:
    return int(client.get(key) or 0)


def warm_up(
    workers: Workers, worker_app: Any, worker_redis: redis.Redis, repo: Any, queue_client: Any
) -> None:
    """Not timed: every pool child opens its Redis client, its database pool, compiles pass3."""
    count = WARMUP_PER_WORKER * workers.count
    for _attempt in range(5):
        key = f"warm:{uuid.uuid4().hex}"
        pids = f"{key}:pids"
        for _ in range(count):
            worker_app.send_task(NOOP_TASK, args=(key, count, pids), queue=QUEUE)
        wait_for(partial(noop_counter, worker_redis, key), count, workers, "warm-up no-op", 0.05)
        if worker_redis.scard(pids) >= workers.count * workers.concurrency:
            break
    else:
        raise RuntimeError("warm-up: not every pool child took a task")
    key = f"warm-insert{uuid.uuid4().hex[:8]}"  # part 2b's task opens its connection once per child
    for index in range(count):
        worker_app.send_task(INSERT_TASK, args=(key, count, f"{key}-{index}", PASS3_INPUT), queue=QUEUE)
    wait_for(partial(noop_counter, worker_redis, key), count, workers, "warm-up insert", 0.05)
    already, prefix = finished(repo, WARM_MACHINE), uuid.uuid4().hex[:8]
    summary = queue_client.enqueue_many(
        (
            {"state_machine_id": WARM_MACHINE, "name": f"warm-{prefix}-{i}", "input": PASS3_INPUT}
            for i in range(count)
        ),
        QUEUE,
    )
    if summary.enqueued != count:
        raise RuntimeError(f"warm-up: enqueued {summary.to_dict()}")
    wait_for(lambda: finished(repo, WARM_MACHINE) - already, count, workers, "warm-up smq", 0.1)


@dataclass(frozen=True)
class Rig:
    """What every timed round of parts 1, 2 and 2b runs on: the workers and their Redis db, the staging
    side that holds a round's messages until it is released, the bench database, and the service
    processes whose CPU is metered beside the workers'."""

    workers: Workers
    repo: Any
    staging_app: Any
    staging_client: Any
    staging: redis.Redis
    worker_redis: redis.Redis
    db: int
    service_pids: dict[str, Callable[[], list[int]]]


def run_bare(number: int, count: int, rig: Rig) -> Throughput:
    """Part 1, round `number`: N no-op tasks staged, released at once, first to last completion."""
    result = Throughput("bare Celery no-op", count, rig.workers.count, number, load1=load1())
    key = f"bare:{uuid.uuid4().hex}"
    return run_counted(result, key, lambda _i: (NOOP_TASK, (key, count)), rig)


def run_insert(number: int, count: int, rig: Rig) -> Throughput:
    """Part 2b, round `number` (context): N tasks that each INSERT one row into PostgreSQL, then count."""
    result = Throughput("Celery + one PostgreSQL INSERT", count, rig.workers.count, number, load1=load1())
    key = f"insert{number}x{uuid.uuid4().hex[:8]}"
    result = run_counted(
        result, key, lambda i: (INSERT_TASK, (key, count, f"{key}-{i:07d}", PASS3_INPUT)), rig
    )
    with rig.repo.reader.connect() as connection:
        rows = connection.execute(
            text("SELECT count(*) FROM smq_bench_rows WHERE id LIKE :prefix"), {"prefix": f"{key}-%"}
        ).scalar_one()
    if rows != count:
        result.ok = False
        result.detail = "; ".join(
            filter(None, [result.detail, f"{rows} rows in smq_bench_rows, expected {count}"])
        )
    return result


def run_counted(
    result: Throughput, key: str, message: Callable[[int], tuple[str, tuple[Any, ...]]], rig: Rig
) -> Throughput:
    """A round of N tasks (`message(i)` = task name and args of the i-th) counted on Redis counter
    `key`: staged, released at once, timed from the first completion to the last."""
    count = result.count
    start = time.perf_counter()
    for index in range(count):
        name, args = message(index)
        rig.staging_app.send_task(name, args=args, queue=QUEUE)
    result.publish_seconds = time.perf_counter() - start
    log(f"{result.what}: {count:,} tasks staged in {result.publish_seconds:.1f}s; releasing")
    meter = rig.workers.meter(rig.service_pids)
    meter.start()
    release(rig.staging, rig.db, count)
    wait_for(lambda: noop_counter(rig.worker_redis, key), count, rig.workers, result.what, 0.05)
    result.cpu = meter.stop()
    time.sleep(0.5)  # anything beyond N (a duplicate delivery) would show up now
    done = noop_counter(rig.worker_redis, key)
    first, last = rig.worker_redis.get(f"{key}:first"), rig.worker_redis.get(f"{key}:last")
    problems = []
    if done != count:
        problems.append(f"counter is {done}, expected {count}")
    if first is None or last is None:
        problems.append("first/last completion times missing")
    else:
        result.seconds = float(last) - float(first)
        result.intervals = count - 1
    problems += leftover_messages(rig.worker_redis)
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def finished(repo: Any, machine: str) -> int:
    """Executions of state machine `machine` that are no longer RUNNING."""
    with repo.reader.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM smq_executions WHERE state_machine_id = :sm AND status <> 'RUNNING'"
                ),
                {"sm": machine},
            ).scalar_one()
        )


def run_smq(number: int, count: int, rig: Rig, py_spy: str | None = None) -> Throughput:
    """Part 2, round `number`: N pass3 executions of state machine smq_machine(number), enqueued with
    enqueue_many, released at once, first start to last stop."""
    result = Throughput("smq pass3 (PostgreSQL)", count, rig.workers.count, number, load1=load1())
    state_machine = smq_machine(number)
    from smq import StateMachine

    machine = StateMachine.from_definition(json.loads(PASS3_FILE.read_text()))
    result.writes_per_item = writes_per_execution(machine, PASS3_INPUT)
    result.commit_ms = commit_latency_ms(rig.repo, "postgresql")
    payloads = (
        {"state_machine_id": state_machine, "name": f"run-{i:07d}", "input": PASS3_INPUT}
        for i in range(count)
    )
    start = time.perf_counter()
    summary = rig.staging_client.enqueue_many(payloads, QUEUE, chunk_size=CHUNK_SIZE)
    result.publish_seconds = time.perf_counter() - start
    if summary.enqueued != count or summary.failed or summary.skipped:
        result.detail = f"enqueue_many: {summary.to_dict()}"
        return result
    log(f"smq: {count:,} executions enqueued in {result.publish_seconds:.1f}s; releasing")
    profiler = PySpy(py_spy, rig.workers.child_pids(), rig.workers.log_dir) if py_spy else None
    if profiler is not None:
        profiler.start()
    meter = rig.workers.meter(rig.service_pids)
    meter.start()
    release(rig.staging, rig.db, count)
    wait_for(lambda: finished(rig.repo, state_machine), count, rig.workers, "smq", 0.25)
    result.cpu = meter.stop()
    if profiler is not None:
        result.profile = profiler.stop(count)
    time.sleep(0.5)
    problems, span, mean_ms = verify_executions(rig.repo, state_machine, count)
    if span is not None:
        result.seconds, result.intervals = span, count
    result.mean_execution_ms = mean_ms
    problems += leftover_messages(rig.worker_redis)
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def verify_executions(repo: Any, machine: str, count: int) -> tuple[list[str], float | None, float | None]:
    """Exactly N executions of state machine `machine`, all SUCCEEDED with AWS's output, 3 history rows
    each, and no dead letter in the database; their span (first start to last stop) and mean duration."""
    problems: list[str] = []
    with repo.reader.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*) AS n, "
                "count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded, "
                "count(*) FILTER (WHERE output = CAST(:output AS jsonb)) AS right_output, "
                "count(*) FILTER (WHERE history_length = :states) AS right_length, "
                "min(start_time) AS first_start, max(stop_time) AS last_stop, "
                "avg(extract(epoch FROM stop_time - start_time)) * 1000 AS mean_ms "
                "FROM smq_executions WHERE state_machine_id = :sm"
            ),
            {"sm": machine, "output": json.dumps(PASS3_OUTPUT), "states": PASS3_STATES},
        ).one()
        wrong_history = connection.execute(
            text(
                "SELECT count(*) FROM (SELECT e.id, count(h.id) AS rows FROM smq_executions e "
                "LEFT JOIN smq_history h ON h.execution_id = e.id WHERE e.state_machine_id = :sm "
                "GROUP BY e.id) per_execution WHERE rows <> :states"
            ),
            {"sm": machine, "states": PASS3_STATES},
        ).scalar_one()
        dead = connection.execute(text("SELECT count(*) FROM smq_dead_letters")).scalar_one()
    if row.n != count:
        problems.append(f"{row.n} executions, expected {count}")
    if row.succeeded != row.n:
        problems.append(f"{row.n - row.succeeded} not SUCCEEDED")
    if row.right_output != row.n:
        problems.append(f"{row.n - row.right_output} with an output other than {json.dumps(PASS3_OUTPUT)}")
    if row.right_length != row.n:
        problems.append(f"{row.n - row.right_length} with history_length != {PASS3_STATES}")
    if wrong_history:
        problems.append(f"{wrong_history} without exactly {PASS3_STATES} history rows")
    if dead:
        problems.append(f"{dead} dead letter(s)")
    span = None
    if row.first_start is not None and row.last_stop is not None:
        span = (row.last_stop - row.first_start).total_seconds()
    return problems, span, None if row.mean_ms is None else float(row.mean_ms)


# ------------------------------------------------------------------ part 3: publishing


def source_rows(machine: str, count: int) -> Iterator[tuple[Any, ...]]:
    """SUCCEEDED executions in EXECUTION_COLUMNS order, one start time each, small output."""
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    for index in range(count):
        start = origin + timedelta(milliseconds=index)
        stop = start + timedelta(milliseconds=5)
        yield (
            str(uuid.uuid4()), f"src-{index:07d}", machine, 1, "SUCCEEDED",
            json.dumps({"name": f"src-{index}"}), json.dumps({"name": f"src-{index}", "step": 1}),
            None, None, None, None, PASS3_STATES, start, stop, 5, stop, None, None, None,
        )  # fmt: skip


def load_sources(repo: Any, machine: str, count: int) -> float:
    """COPY ... FROM STDIN on the raw psycopg connection, then ANALYZE (as bench/persistence.py does)."""
    start = time.perf_counter()
    copy_executions(repo, source_rows(machine, count))
    return time.perf_counter() - start


def clear_ledger(repo: Any, machine: str) -> None:
    with repo.engine.begin() as connection:
        connection.execute(text("DELETE FROM smq_enqueued WHERE state_machine_id = :sm"), {"sm": machine})


def run_leader(repo: Any, client: Any, staging: redis.Redis, count: int) -> Publish:
    """fan_out over the M sources, timed from the call to its return; then LLEN must be M."""
    from smq.distributed.leader import fan_out
    from smq.repository.filters import ExecutionFilter

    result = Publish("leader fan_out", count, load1=load1())
    start = time.perf_counter()
    summary = fan_out(
        client, CHAIN_TARGET, ExecutionFilter(state_machine_id=SOURCE_MACHINE), chunk_size=CHUNK_SIZE
    )
    result.seconds = time.perf_counter() - start
    result.queue_length = queue_length(staging)
    problems = []
    if summary.enqueued != count or summary.skipped or summary.failed:
        problems.append(f"fan_out returned {summary.to_dict()}")
    if result.queue_length != count:
        problems.append(f"queue holds {result.queue_length}, expected {count}")
    result.ok = not problems
    result.detail = "; ".join(problems)
    return result


def leader_payloads(repo: Any) -> list[dict[str, Any]]:
    """Exactly what fan_out publishes per source (its payload after QueueClient's validation)."""
    from smq.execution.batch import chained_name
    from smq.repository.filters import ExecutionFilter

    return [
        {
            "state_machine_id": CHAIN_TARGET,
            "name": chained_name("", source),
            "source_execution_id": source.execution_id,
            "options": {"queue": QUEUE},
        }
        for source in repo.stream_execution_keys(
            ExecutionFilter(state_machine_id=SOURCE_MACHINE), page_size=CHUNK_SIZE
        )
    ]


def run_plain(app: Any, staging: redis.Redis, payloads: list[dict[str, Any]]) -> Publish:
    """One producer, one app.send_task per payload; then LLEN must be M."""
    result = Publish("plain send_task loop", len(payloads), load1=load1())
    send = app.send_task
    start = time.perf_counter()
    for payload in payloads:
        send(SMQ_TASK, args=(payload,), queue=QUEUE)
    result.seconds = time.perf_counter() - start
    result.queue_length = queue_length(staging)
    result.ok = result.queue_length == len(payloads)
    result.detail = "" if result.ok else f"queue holds {result.queue_length}, expected {len(payloads)}"
    return result


def run_publishing(
    repo: Any, client: Any, app: Any, staging: redis.Redis, count: int, rounds: int, results: Results
) -> None:
    log(f"publish: loading {count:,} sources")
    seconds = load_sources(repo, SOURCE_MACHINE, count)
    log(f"publish: loaded in {seconds:.1f}s")
    payloads = leader_payloads(repo)
    if len(payloads) != count:
        raise RuntimeError(f"{len(payloads)} sources streamed back, expected {count}")
    for _ in range(200):  # warm the producer's connection and Celery's publish path, then discard
        app.send_task(SMQ_TASK, args=(payloads[0],), queue=QUEUE)
    delete_queues(staging)
    for round_number in range(1, rounds + 1):
        clear_ledger(repo, CHAIN_TARGET)
        log(f"publish round {round_number}/{rounds}: leader fan_out of {count:,}")
        results.leader.append(run_leader(repo, client, staging, count))
        log(f"  {results.leader[-1].rate:,.0f} messages/s")
        delete_queues(staging)
        log(f"publish round {round_number}/{rounds}: plain send_task loop of {count:,}")
        results.plain.append(run_plain(app, staging, payloads))
        log(f"  {results.plain[-1].rate:,.0f} messages/s")
        delete_queues(staging)


# ------------------------------------------------------------------ part 4: leader memory


def run_leader_process(
    repo: Any, env: dict[str, str], staging: redis.Redis, machine: str, count: int, work_dir: Path
) -> LeaderMemory:
    """`smq leader --filter state_machine_id=SRC --target DST --json` as a child; its VmHWM at exit."""
    result = LeaderMemory(count, load1=load1())
    rss_file = work_dir / f"rss-{machine}"
    command = [
        sys.executable, "-c", LEADER_WRAPPER, "leader",
        "--filter", f"state_machine_id={machine}", "--target", CHAIN_TARGET, "--json",
    ]  # fmt: skip
    child_env = {**env, "SMQ_BENCH_RSS_FILE": str(rss_file)}
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    polled = [0]

    def poll() -> None:
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        polled[0] = max(polled[0], int(line.split()[1]) * 1024)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = process.communicate()
    result.seconds = time.perf_counter() - start
    poller.join()
    result.exit_code = process.returncode
    result.polled_peak_rss = polled[0]
    problems = []
    try:
        result.peak_rss = int(rss_file.read_text())
    except (OSError, ValueError):
        problems.append("the child did not report its VmHWM")
    try:
        summary = json.loads(stdout)
        result.enqueued = int(summary.get("enqueued", 0))
    except (ValueError, TypeError, AttributeError):
        problems.append(f"no JSON summary on stdout: {stdout[-300:]!r}")
    if process.returncode != 0:
        problems.append(f"exit code {process.returncode}: {stderr.decode(errors='replace')[-500:]}")
    result.queue_length = queue_length(staging)
    if result.enqueued != count:
        problems.append(f"enqueued {result.enqueued}, expected {count}")
    if result.queue_length != count:
        problems.append(f"queue holds {result.queue_length}, expected {count}")
    result.ok = not problems
    result.detail = "; ".join(problems)
    delete_queues(staging)
    return result


# ------------------------------------------------------------------ report


def _fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:,.1f} MB"


def _verdict(ok: bool, met: bool | None = None) -> str:
    if not ok:
        return "[red]FAILED verification[/]"
    if met is None:
        return "[green]verified[/]"
    return "[green]met[/]" if met else "[red]NOT met[/]"


def round_detail(run: Throughput) -> str:
    """One round's span, cost per task, publishing rate and (smq) commit figures and CPU breakdown."""
    detail = (
        f"{run.count:,} in {run.seconds:.2f}s; {run.worker_ms_per_item or 0:.2f} ms/task/worker; "
        f"published at {run.count / run.publish_seconds if run.publish_seconds else 0:,.0f}/s"
    )
    if run.mean_execution_ms is not None:
        detail += f"; execution start→stop {run.mean_execution_ms:.2f} ms"
    if run.commit_bound is not None:
        detail += (
            f"\n{run.writes_per_item} write transactions/execution, bare commit {run.commit_ms:.3f} ms "
            f"→ commit-bound {run.commit_bound:,.0f} exec/s on {run.workers} worker(s)"
        )
    if run.cpu is not None:
        shares = ", ".join(f"{name} {ms:.2f}" for name, ms in run.cpu.per_item_ms(run.count).items())
        detail += f"\nCPU ms per task (round {run.number}): {shares}"
    return detail


def add_throughput_rows(table: Any, results: Results) -> None:
    """Parts 1 and 2: each part's median rate with the median pair's round in detail, every pair's
    ratio, then the median paired ratio, which is what the goal judges."""
    median = results.median_pair
    for part, runs, shown, unit in (
        ("1", results.bare_rounds, results.bare, "tasks/s"),
        ("2", results.smq_rounds, results.smq, "exec/s"),
    ):
        if not runs or shown is None:
            continue
        rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
        which = "the median pair's" if median is not None else "the first"
        detail = f"rounds: {rates} {unit}\nround {shown.number}, {which}: {round_detail(shown)}"
        table.add_row(
            part, f"{runs[0].what}: median of {len(runs)} round(s)",
            f"{_fmt(results.median_rate(runs))} {unit}", detail, "", _verdict(all(run.ok for run in runs)),
        )  # fmt: skip
    for index, (bare, smq) in enumerate(results.pairs):
        detail = (
            f"bare {bare.rate:,.0f} tasks/s, smq {smq.rate:,.0f} exec/s; "
            f"load1 at start {bare.load1:.2f} / {smq.load1:.2f}"
        )
        if index == median:
            detail += " (the median pair)"
        if smq.profile:
            detail += " (smq round under py-spy)"
        table.add_row(
            "1-2", f"pair {index + 1}: smq / bare", _fmt(results.pair_ratio(bare, smq), 3), detail, "",
            _verdict(bare.ok and smq.ok),
        )  # fmt: skip
    if results.pairs:
        table.add_row(
            "1-2", f"smq / bare: median of {len(results.pairs)} paired ratio(s)", _fmt(results.smq_ratio, 3),
            "", f">= {GOAL_SMQ_OVER_BARE}", _verdict(results.throughput_ok, results.smq_goal_met),
        )  # fmt: skip
    add_insert_rows(table, results)


def add_insert_rows(table: Any, results: Results) -> None:
    """Part 2b (context, not judged): the one-INSERT task's rate, and smq and bare against it."""
    runs = results.insert_rounds
    if not runs:
        return
    shown = results.of_median_pair(runs)
    assert shown is not None
    rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
    table.add_row(
        "2b", f"{runs[0].what}: median of {len(runs)} round(s)", f"{_fmt(results.median_rate(runs))} tasks/s",
        f"rounds: {rates} tasks/s\nround {shown.number}: {round_detail(shown)}", "context",
        _verdict(all(run.ok for run in runs)),
    )  # fmt: skip
    table.add_row(
        "2b", "one-INSERT task / bare: median of round ratios", _fmt(results.insert_over_bare, 3),
        "the most a design that writes once per task could reach against the no-op", "context", "",
    )  # fmt: skip
    table.add_row(
        "2b", "smq / one-INSERT task: median of round ratios", _fmt(results.smq_over_insert, 3),
        "what smq keeps of a task that only records its outcome durably", "context", "",
    )  # fmt: skip


def report_table(results: Results, args: argparse.Namespace) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=(
            f"Distributed execution: {args.workers} worker(s) x `-c {args.concurrency} --pool prefork`, "
            "Redis + PostgreSQL"
        ),
        box=box.SIMPLE_HEAD,
    )
    for column, justify in (("part", "left"), ("measurement", "left"), ("figure", "right"), ("detail", "left"),
                            ("goal", "right"), ("result", "left")):  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    add_throughput_rows(table, results)
    for runs in (results.leader, results.plain):
        best = results.best(runs)
        if best is None:
            continue
        rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
        detail = f"{best.messages:,} in {best.seconds:.2f}s; LLEN {best.queue_length:,}"
        if len(runs) > 1:
            detail += f"; rounds: {rates}/s (best shown)"
        table.add_row(
            "3", best.what, f"{_fmt(best.rate)} msg/s", detail, "", _verdict(all(r.ok for r in runs))
        )
    if results.leader and results.plain:
        table.add_row(
            "3", "leader / plain", _fmt(results.leader_ratio, 3), "", f">= {GOAL_LEADER_OVER_PLAIN}",
            _verdict(results.publish_ok, results.leader_goal_met),
        )  # fmt: skip
    for memory in results.memory:
        table.add_row(
            "4", f"`smq leader` peak RSS, {memory.sources:,} sources", _mb(memory.peak_rss),
            f"VmHWM at exit (polled {_mb(memory.polled_peak_rss)}); {memory.seconds:.1f}s, "
            f"{memory.sources / memory.seconds if memory.seconds else 0:,.0f} sources/s",
            "", _verdict(memory.ok),
        )  # fmt: skip
    if len(results.memory) >= 2:
        growth = results.memory_growth
        table.add_row(
            "4", "peak RSS growth", _mb(growth),
            f"{results.memory[0].sources:,} → {results.memory[-1].sources:,} sources",
            f"< {GOAL_MEMORY_GROWTH_MB:.0f} MB", _verdict(all(r.ok for r in results.memory), results.memory_goal_met),
        )  # fmt: skip
    return table


def profile_table(profile: dict[str, Any], number: int) -> Any:
    """The py-spy summary of part 2's round `number`: where a pool child's wall time goes per execution."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=(
            f"Part 2, round {number}, under py-spy ({profile['rate_hz']} Hz, wall clock incl. waits, "
            "pool children)"
        ),
        box=box.SIMPLE_HEAD,
    )
    table.add_column("where")
    table.add_column("ms / execution", justify="right")
    table.add_column("% of execute_state_machine", justify="right")
    for name, value in profile["ms_per_execution"].items():
        table.add_row(f"[bold]{name}[/]", f"{value:.3f}", "")
    for row in profile["inclusive_under_execute_state_machine"]:
        table.add_row(f"  {row['function']}", f"{row['ms_per_execution']:.3f}", f"{row['share']:.1%}")
    return table


def print_report(report: dict[str, Any], results: Results, args: argparse.Namespace) -> None:
    out = console(220)
    out.print(report_table(results, args))
    for smq in results.smq_rounds:
        if smq.profile:
            out.print(profile_table(smq.profile, smq.number))
            out.print(
                f"[yellow]part 2's round {smq.number} ran under py-spy: its figure and pair {smq.number}'s "
                "ratio are perturbed by the sampling[/]"
            )
    out.print(f"{load_line(report)}; all goals met: {report['all_goals_met']}")
    for throughput in results.bare_rounds + results.smq_rounds + results.insert_rounds:
        if throughput.detail:
            out.print(f"[red]{throughput.label}: {throughput.detail}[/]")
    for publish in results.leader + results.plain:
        if publish.detail:
            out.print(f"[red]{publish.what}: {publish.detail}[/]")
    for memory in results.memory:
        if memory.detail:
            out.print(f"[red]leader over {memory.sources:,} sources: {memory.detail}[/]")
    for error in results.errors:
        out.print(f"[red]error: {error}[/]")


def all_met(results: Results, args: argparse.Namespace) -> bool:
    if results.errors:
        return False
    checks = [results.smq_goal_met, results.leader_goal_met]
    if not args.skip_memory:
        checks.append(results.memory_goal_met)
    return all(checks)


def build_report(
    args: argparse.Namespace, results: Results, started: float, load_start: Any
) -> dict[str, Any]:
    import celery
    import kombu

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "cpus": os.cpu_count(),
        "load_average": load_average(load_start),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "settings": {
            "tasks": args.tasks,
            "pairs": args.pairs,
            "sources": args.sources,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "rounds": args.rounds,
            "memory_sources": args.memory_sizes,
            "skip_memory": args.skip_memory,
            "task_events": args.task_events,
            "py_spy": bool(args.py_spy),
            "redis_db": args.redis_db,
            "staging_db": args.staging_db,
        },
        "goals": {
            "smq_over_bare": GOAL_SMQ_OVER_BARE,
            "leader_over_plain": GOAL_LEADER_OVER_PLAIN,
            "memory_growth_mb_below": GOAL_MEMORY_GROWTH_MB,
        },
        "bare": results.bare.as_dict() if results.bare else None,
        "smq": results.smq.as_dict() if results.smq else None,
        "smq_over_bare": None if results.smq_ratio is None else round(results.smq_ratio, 4),
        "smq_goal_met": results.smq_goal_met,
        "median_pair": None if results.median_pair is None else results.median_pair + 1,
        "bare_median_per_second": _rounded(results.median_rate(results.bare_rounds)),
        "smq_median_per_second": _rounded(results.median_rate(results.smq_rounds)),
        "insert_rounds": [run.as_dict() for run in results.insert_rounds],
        "insert_median_per_second": _rounded(results.median_rate(results.insert_rounds)),
        "insert_over_bare": _rounded(results.insert_over_bare, 4),
        "smq_over_insert": _rounded(results.smq_over_insert, 4),
        "pairs": [
            {
                "pair": index,
                "bare": bare.as_dict() if bare else None,
                "smq": smq.as_dict() if smq else None,
                "smq_over_bare": _rounded(results.pair_ratio(bare, smq), 4) if bare and smq else None,
                "insert": insert.as_dict() if insert else None,
            }
            for index, (bare, smq, insert) in enumerate(
                itertools.zip_longest(results.bare_rounds, results.smq_rounds, results.insert_rounds), start=1
            )
        ],
        "leader": [run.as_dict() for run in results.leader],
        "plain": [run.as_dict() for run in results.plain],
        "leader_over_plain": None if results.leader_ratio is None else round(results.leader_ratio, 4),
        "leader_goal_met": results.leader_goal_met,
        "leader_memory": [run.as_dict() for run in results.memory],
        "leader_memory_growth_bytes": results.memory_growth,
        "memory_goal_met": None if args.skip_memory else results.memory_goal_met,
        "errors": results.errors,
        "all_goals_met": all_met(results, args),
    }


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="N for parts 1 and 2 (default 5,000)")
    parser.add_argument("--sources", type=int, default=None, help="M for part 3 (default 20,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=os.cpu_count() or 1,
        help="prefork pool children per worker, -c (default: Celery's own, one per CPU)",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="bare-then-smq round pairs in parts 1 and 2; median paired ratio judged (default 5; --quick 2)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="leader/plain pairs in part 3, best kept (default 1)"
    )
    parser.add_argument(
        "--memory-sizes", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=None,
        help="sources for the two leader memory runs (default 10,000 200,000)",
    )  # fmt: skip
    parser.add_argument("--skip-memory", action="store_true", help="skip part 4")
    parser.add_argument(
        "--checkpoints",
        choices=("boundaries", "every-state"),
        default=os.environ.get("SMQ_CHECKPOINTS") or "boundaries",
        help="SMQ_CHECKPOINTS for the workers: boundaries (smq's default) or every-state (one write per step)",
    )
    parser.add_argument(
        "--task-events",
        choices=("on", "off"),
        default=os.environ.get("SMQ_TASK_EVENTS") or "on",
        help="SMQ_TASK_EVENTS for workers and clients: Celery task events, what Flower shows (smq's default: on)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: 500 tasks, 2 pairs, 2,000 sources, 1k/20k memory"
    )
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help=f"an existing database to connect to ({DEFAULT_PG_URL})"
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"a Redis server, no db, whose dbs the bench flushes (e.g. {DEFAULT_REDIS_URL}); default: one of its own",
    )
    parser.add_argument(
        "--redis-db", type=int, default=13, help="the workers' Redis db, flushed (default 13)"
    )
    parser.add_argument(
        "--staging-db", type=int, default=14, help="db where messages are staged, flushed (default 14)"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="profile the pool children with this py-spy during part 2's first round (perturbs that round)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON instead of the table")
    parser.add_argument("--save", metavar="PATH", help="also write the JSON results to PATH")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (500 if args.quick else 5_000)
    args.pairs = args.pairs or (2 if args.quick else 5)
    args.sources = args.sources or (2_000 if args.quick else 20_000)
    args.memory_sizes = args.memory_sizes or ([1_000, 20_000] if args.quick else [10_000, 200_000])
    counts = (args.sources, args.workers, args.concurrency, args.rounds, args.pairs)
    if args.tasks < 2 or min(counts) < 1:
        parser.error("--tasks must be >= 2, --pairs, --sources, --workers, --concurrency and --rounds >= 1")
    if args.redis_db == args.staging_db:
        parser.error("--redis-db and --staging-db must differ")
    return args


def run_pair(number: int, args: argparse.Namespace, results: Results, rig: Rig) -> None:
    """Pair `number`: part 1's round, then part 2's, back to back, so both see the machine at about
    the same speed, then part 2b's (context, right after part 2's); py-spy (if asked) samples only the
    first pair's smq round."""
    log(f"pair {number}/{args.pairs}, part 1: bare Celery, {args.tasks:,} no-op tasks")
    bare = run_bare(number, args.tasks, rig)
    results.bare_rounds.append(bare)
    log(f"  {bare.rate:,.0f} tasks/s")
    log(f"pair {number}/{args.pairs}, part 2: smq, {args.tasks:,} pass3 executions ({smq_machine(number)})")
    smq = run_smq(number, args.tasks, rig, py_spy=args.py_spy if number == 1 else None)
    results.smq_rounds.append(smq)
    ratio = results.pair_ratio(bare, smq)
    log(f"  {smq.rate:,.0f} executions/s; smq / bare {'n/a' if ratio is None else f'{ratio:.3f}'}")
    log(f"pair {number}/{args.pairs}, part 2b (context): {args.tasks:,} tasks of one PostgreSQL INSERT each")
    insert = run_insert(number, args.tasks, rig)
    results.insert_rounds.append(insert)
    log(f"  {insert.rate:,.0f} tasks/s")


def run(args: argparse.Namespace, results: Results, work_dir: Path) -> None:
    with redis_base_url(args.redis_url, work_dir) as base:
        run_on(args, results, work_dir, base)


def run_on(args: argparse.Namespace, results: Results, work_dir: Path, base: str) -> None:
    worker_url, staging_url = f"{base}/{args.redis_db}", f"{base}/{args.staging_db}"
    # Anything in this process that falls back to smq's default app must not reach another Redis db.
    os.environ["SMQ_BROKER_URL"] = worker_url
    worker_redis, staging = redis.Redis.from_url(worker_url), redis.Redis.from_url(staging_url)
    with (
        flushed_redis(worker_redis, staging),
        fresh_database(args.pg_url, f"smq_bench_dist_{os.getpid()}") as database_url,
    ):
        from smq.distributed.client import QueueClient
        from smq.repository.repository import Repository

        repo = Repository.open(database_url)
        try:
            definition = json.loads(PASS3_FILE.read_text())
            round_machines = [smq_machine(number) for number in range(1, args.pairs + 1)]
            for machine in (*round_machines, WARM_MACHINE, SOURCE_MACHINE, CHAIN_TARGET):
                repo.put_definition(machine, definition)
            with repo.engine.begin() as connection:  # part 2b's rows
                connection.execute(
                    text("CREATE TABLE smq_bench_rows (id text PRIMARY KEY, payload jsonb NOT NULL)")
                )
            worker_app, staging_app = make_app(worker_url), make_app(staging_url)
            staging_client = QueueClient(repo, app=staging_app)
            env = {**os.environ, "SMQ_BROKER_URL": worker_url, "SMQ_DATABASE_URL": database_url,
                   "SMQ_HANDLERS": str(HANDLERS_FILE)}  # fmt: skip
            workers = Workers(args.workers, env, work_dir, args.concurrency)
            rig = Rig(workers, repo, staging_app, staging_client, staging, worker_redis, args.redis_db,
                      service_processes(repo, worker_redis))  # fmt: skip
            log(f"starting {args.workers} worker(s); logs in {work_dir}")
            workers.start()
            try:
                workers.wait_ready(worker_app)
                log("workers ready; warming up")
                warm_up(workers, worker_app, worker_redis, repo, QueueClient(repo, app=worker_app))
                delete_queues(staging)
                for number in range(1, args.pairs + 1):
                    run_pair(number, args, results, rig)
            finally:
                log("stopping the workers")
                workers.stop()
            delete_queues(staging)  # not FLUSHDB: kombu's binding keys must stay (the producer caches them)
            run_publishing(repo, staging_client, staging_app, staging, args.sources, args.rounds, results)
            if not args.skip_memory:
                leader_env = {**os.environ, "SMQ_BROKER_URL": staging_url, "SMQ_DATABASE_URL": database_url}
                leader_env.pop("SMQ_HANDLERS", None)
                for size in args.memory_sizes:
                    machine = f"mem-{size}"
                    repo.put_definition(machine, definition)
                    log(f"memory: loading {size:,} sources")
                    load_sources(repo, machine, size)
                    log(f"memory: `smq leader` over {size:,} sources")
                    results.memory.append(
                        run_leader_process(repo, leader_env, staging, machine, size, work_dir)
                    )
                    log(
                        f"  peak RSS {results.memory[-1].peak_rss / MIB:.1f} MB in {results.memory[-1].seconds:.1f}s"
                    )
        finally:
            repo.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["SMQ_CHECKPOINTS"] = args.checkpoints  # the workers inherit it; writes_per_execution reads it
    log(f"SMQ_CHECKPOINTS={args.checkpoints}")
    os.environ["SMQ_TASK_EVENTS"] = args.task_events  # workers inherit it; this process's Celery app too
    log(f"SMQ_TASK_EVENTS={args.task_events}")
    started = time.perf_counter()
    load_start = os.getloadavg()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="smq-bench-dist-") as directory:
        try:
            run(args, results, Path(directory))
        except Exception as exc:  # still report what was measured
            results.errors.append(f"{type(exc).__name__}: {exc}")
            log(f"benchmark aborted:\n{traceback.format_exc()}")
    report = build_report(args, results, started, load_start)
    emit_report(report, args.save, args.json, lambda: print_report(report, results, args))
    return 0 if report["all_goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
