"""Part 1 of bench/persistence.py: the cost of durability, persisted executions against the same
workflow run in memory (the baseline).

For each workload of bench/engine.py on each backend, ``start_execution`` is timed back to back (one
thread, then ``--threads`` threads of this process on the shared repository), then
``StateMachine.run`` in memory for as long; the goal (transitions/s per backend) is judged on the
better persisted rate. Outputs are verified against the in-memory run and AWS before any timing, and
every transition claimed must have its history row."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from harness.database import commit_latency_ms, writes_per_execution
from harness.progress import load1, log
from sqlalchemy import text

from scenarios.engine.workloads import Workload
from smq import ExecutionRecord, Repository, StartRequest, StateMachine
from smq import start_execution as run_start

GOALS = {"postgresql": 1500.0, "sqlite": 3000.0}  # persisted transitions/s from one process
DEFAULT_THREADS = 4  # the concurrency `smq leader --local` (run_batch) and `smq start --bulk` use by default


def start_execution(repo: Repository, request: StartRequest) -> ExecutionRecord:
    """`smq.execution.runner.start_execution` in the SMQ_CHECKPOINTS mode `main` set (the runner
    itself reads no environment)."""
    return run_start(repo, request, checkpoints=os.environ.get("SMQ_CHECKPOINTS") or None)


@dataclass
class Rate:
    """Executions and state transitions completed over the time they took."""

    executions: int = 0
    transitions: int = 0
    seconds: float = 0.0

    @property
    def executions_per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0

    @property
    def transitions_per_second(self) -> float:
        return self.transitions / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "executions": self.executions,
            "transitions": self.transitions,
            "seconds": round(self.seconds, 4),
            "executions_per_second": round(self.executions_per_second, 2),
            "transitions_per_second": round(self.transitions_per_second, 2),
        }


@dataclass
class Cell:
    """One workload on one backend: persisted (sequential, then N threads) and in-memory rates."""

    backend: str
    workload: Workload
    ok: bool
    detail: str = ""
    persisted: Rate = field(default_factory=Rate)  # one thread, one execution at a time
    concurrent: Rate = field(default_factory=Rate)  # `threads` threads of this process at once
    threads: int = 0
    memory: Rate = field(default_factory=Rate)
    writes_per_execution: int = 0  # write transactions per execution in the SMQ_CHECKPOINTS mode
    commit_ms: float = 0.0  # one single-row write transaction on this backend, just before timing
    load1: float = 0.0

    @property
    def commit_bound(self) -> float | None:
        """Transitions/s if every write cost exactly one probe commit and nothing else did."""
        if not self.commit_ms or not self.writes_per_execution:
            return None
        return 1000 / (self.commit_ms * self.writes_per_execution) * self.workload.states_entered

    @property
    def goal(self) -> float:
        return GOALS[self.backend]

    @property
    def ratio(self) -> float | None:
        rate = self.memory.executions_per_second
        return self.persisted.executions_per_second / rate if rate else None

    @property
    def best(self) -> tuple[str, Rate]:
        """The better persisted measurement ("sequential" or "concurrent"): the goal is judged on it."""
        if self.threads and self.concurrent.transitions_per_second > self.persisted.transitions_per_second:
            return "concurrent", self.concurrent
        return "sequential", self.persisted

    @property
    def goal_met(self) -> bool:
        return self.ok and self.best[1].transitions_per_second >= self.goal

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "workflow": self.workload.name,
            "states_entered_per_execution": self.workload.states_entered,
            "output_ok": self.ok,
            "detail": self.detail,
            "persisted": self.persisted.as_dict(),
            "persisted_concurrent": {"threads": self.threads, **self.concurrent.as_dict()}
            if self.threads
            else None,
            "in_memory": self.memory.as_dict(),
            "persisted_over_in_memory": None if self.ratio is None else round(self.ratio, 4),
            "goal_transitions_per_second": self.goal,
            "goal_judged_on": self.best[0],
            "best_persisted_transitions_per_second": round(self.best[1].transitions_per_second, 2),
            "goal_met": self.goal_met,
            "writes_per_execution": self.writes_per_execution,
            "commit_ms": round(self.commit_ms, 4),
            "commit_bound_transitions_per_second": None
            if self.commit_bound is None
            else round(self.commit_bound, 1),
            "load1_at_start": self.load1,
        }


def _unique_name() -> str:
    return f"bench-{uuid.uuid4().hex}"


def verify_persisted(repo: Repository, workload: Workload, machine: StateMachine) -> str:
    """Run once persisted and once in memory; '' if they agree (and match AWS), else why not."""
    expected = machine.run(workload.input)
    if expected.status != "SUCCEEDED" or expected.output != workload.expected_output:
        return f"in-memory run gave {expected.status} {json.dumps(expected.output)}"
    record = start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
    if record.status != "SUCCEEDED":
        return f"persisted run {record.status}: {record.error}: {record.cause}"
    if record.output != expected.output:
        return f"persisted output {json.dumps(record.output)} != in-memory {json.dumps(expected.output)}"
    stored = repo.get_execution(record.execution_id)
    if stored.output != expected.output:
        return f"output read back {json.dumps(stored.output)} != in-memory {json.dumps(expected.output)}"
    rows = len(repo.history(record.execution_id))
    if not record.history_length == rows == len(expected.history) == workload.states_entered:
        return (
            f"history_length {record.history_length}, {rows} history rows, {len(expected.history)} "
            f"in memory, expected {workload.states_entered}"
        )
    return ""


def measure_persisted(repo: Repository, workload: Workload, seconds: float) -> Rate:
    """start_execution back to back for `seconds` after a short warm-up; transitions from history_length."""
    warm_until = time.perf_counter() + min(0.3, seconds / 10)
    while time.perf_counter() < warm_until:
        start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
    rate = Rate()
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        record = start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
        if record.status != "SUCCEEDED":
            raise RuntimeError(f"persisted execution {record.status}: {record.error}: {record.cause}")
        rate.executions += 1
        rate.transitions += record.history_length
        now = time.perf_counter()
    rate.seconds = now - start
    return rate


def measure_concurrent(repo: Repository, workload: Workload, seconds: float, threads: int) -> Rate:
    """`threads` threads of this process, each running start_execution back to back (unique names) on
    the shared repository, as `smq leader --local` runs its batch; timed together for `seconds`.

    Every execution still makes its own commits, one per step; what concurrency adds is that the
    database can flush several sessions' commits with one WAL write (group commit), and that one
    thread's Python runs while the others wait for their commits.
    """
    rates = [Rate() for _ in range(threads)]
    errors: list[BaseException] = []
    clock = {"start": 0.0, "deadline": 0.0}

    def set_clock() -> None:  # run by the barrier before it releases anyone: every thread sees it
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    ready = threading.Barrier(threads + 1, action=set_clock)

    def worker(rate: Rate) -> None:
        try:
            warm_until = time.perf_counter() + min(0.3, seconds / 10)
            while time.perf_counter() < warm_until:
                start_execution(repo, StartRequest(workload.name, workload.input, name=_unique_name()))
        except BaseException as exc:  # reported by the main thread after the join
            errors.append(exc)
            ready.abort()
            return
        ready.wait()
        try:
            while time.perf_counter() < clock["deadline"]:
                record = start_execution(
                    repo, StartRequest(workload.name, workload.input, name=_unique_name())
                )
                if record.status != "SUCCEEDED":
                    raise RuntimeError(f"persisted execution {record.status}: {record.error}: {record.cause}")
                rate.executions += 1
                rate.transitions += record.history_length
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(rate,), name=f"bench-{i}") for i, rate in enumerate(rates)]
    for thread in pool:
        thread.start()
    try:
        ready.wait()  # every worker has warmed up (and has its own pooled connection)
    except threading.BrokenBarrierError:
        pass  # a worker failed while warming up: reported below
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - clock["start"]
    if errors:
        raise RuntimeError(f"a benchmark thread failed: {errors[0]!r}") from errors[0]
    total = Rate(seconds=elapsed)
    for rate in rates:
        total.executions += rate.executions
        total.transitions += rate.transitions
    return total


def measure_in_memory(machine: StateMachine, workload: Workload, seconds: float) -> Rate:
    """StateMachine.run back to back for `seconds` after a short warm-up; transitions from the history."""
    warm_until = time.perf_counter() + min(0.2, seconds / 10)
    while time.perf_counter() < warm_until:
        machine.run(workload.input)
    rate = Rate()
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        result = machine.run(workload.input)
        rate.executions += 1
        rate.transitions += len(result.history)
        now = time.perf_counter()
    rate.seconds = now - start
    return rate


def stored_history_rows(repo: Repository, state_machine_id: str) -> tuple[int, int]:
    """(sum of history_length, history rows in the table) over one state machine's executions."""
    with repo.reader.connect() as connection:
        claimed = connection.execute(
            text("SELECT coalesce(sum(history_length), 0) FROM smq_executions WHERE state_machine_id = :sm"),
            {"sm": state_machine_id},
        ).scalar_one()
        rows = connection.execute(
            text(
                "SELECT count(*) FROM smq_history h JOIN smq_executions e ON e.id = h.execution_id "
                "WHERE e.state_machine_id = :sm"
            ),
            {"sm": state_machine_id},
        ).scalar_one()
    return int(claimed), int(rows)


def run_cell(repo: Repository, backend: str, workload: Workload, seconds: float, threads: int) -> Cell:
    """Verify, time persisted (sequential, then `threads` threads), time in memory, then check every
    claimed transition has its history row."""
    definition = workload.definition()
    repo.put_definition(workload.name, definition)
    machine = StateMachine.from_definition(definition)
    cell = Cell(backend, workload, ok=True, load1=load1())
    cell.writes_per_execution = writes_per_execution(machine, workload.input)
    cell.commit_ms = commit_latency_ms(repo, backend)
    cell.detail = verify_persisted(repo, workload, machine)
    if cell.detail:
        cell.ok = False
        return cell
    log(f"{backend}/{workload.name}: persisted, sequential, for {seconds:g}s")
    cell.persisted = measure_persisted(repo, workload, seconds)
    if threads:
        log(f"{backend}/{workload.name}: persisted, {threads} threads, for {seconds:g}s")
        cell.threads = threads
        cell.concurrent = measure_concurrent(repo, workload, seconds, threads)
    log(f"{backend}/{workload.name}: in memory for {seconds:g}s")
    cell.memory = measure_in_memory(machine, workload, seconds)
    claimed, rows = stored_history_rows(repo, workload.name)
    if claimed != rows:
        cell.ok = False
        cell.detail = f"executions claim {claimed} transitions but {rows} history rows are stored"
    return cell
