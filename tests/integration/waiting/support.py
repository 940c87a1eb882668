"""Helpers of the waiting tier on top of the distributed harness (imported, never edited): the
environment of a deployment with this tier's handlers, the `smq scheduler` process, the subprocess
tools, and plain-SQL reads of executions, history, waits and messages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.distributed.harness import ROOT, SMQ, Db, Worker, smq_env

HANDLERS = Path(__file__).with_name("handlers.py")
TOOLS = "tests.integration.waiting.tools"


def counting_step(source: str, result: str, nxt: str | None) -> dict[str, Any]:
    """A Task of the `wt-step` handler (it doubles `n` and logs its call to `calls`): the building block
    of the linear workflows whose re-runs the tests count."""
    return {
        "Type": "Task",
        "Resource": "wt-step",
        "Parameters": {"n.$": source, "calls.$": "$.calls"},
        "ResultSelector": {"n.$": "$.n"},
        "ResultPath": result,
        "Next": nxt,
    }


# Three counting steps A, B, C, then a Pass: stop it after two states and it is RUNNING at C.
LINE = {
    "StartAt": "A",
    "States": {
        "A": counting_step("$.n", "$.a", "B"),
        "B": counting_step("$.a.n", "$.b", "C"),
        "C": counting_step("$.b.n", "$.c", "D"),
        "D": {"Type": "Pass", "End": True},
    },
}


def waiting_env(database_url: str, broker_url: str | None, **extra: str) -> dict[str, str]:
    """A clean smq environment (the harness's short task limits) with this tier's handlers."""
    return smq_env(database_url, broker_url, SMQ_HANDLERS=str(HANDLERS), **extra)


def local(env: dict[str, str]) -> dict[str, str]:
    """`env` without the broker: for `smq_here` (click's runner in this process), whose Celery app
    would publish to the broker read at its import, never the test's. Without a broker whatever
    would be enqueued runs in this process instead, so nothing can stray into another Redis."""
    return {key: value for key, value in env.items() if key != "SMQ_BROKER_URL"}


def run_tool(args: list[str], env: dict[str, str], *, timeout: float = 120) -> Any:
    """`python -m tests.integration.waiting.tools ARGS` in `env`; its JSON output."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", TOOLS, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    print(f"[{time.monotonic() - started:5.1f}s] tools {' '.join(args)[:80]} -> {done.returncode}")
    if done.returncode != 0:
        pytest.fail(f"tools {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout)


def run_smq_parallel(
    commands: list[tuple[list[str], int]], env: dict[str, str], timeout: float = 120
) -> list[str]:
    """Several `smq` commands at once (their start-ups overlap); each must exit with its code. Stdouts."""
    started = time.monotonic()
    procs = [
        (
            args,
            expect,
            subprocess.Popen(
                [SMQ, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for args, expect in commands
    ]
    outputs, problems = [], []
    for args, expect, proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        outputs.append(stdout)
        if proc.returncode != expect:
            problems.append(
                f"smq {' '.join(args)} exited {proc.returncode}, expected {expect}\n{stdout}\n{stderr}"
            )
    print(f"[{time.monotonic() - started:5.1f}s] {len(commands)} smq commands in parallel")
    if problems:
        pytest.fail("\n".join(problems))
    return outputs


class Scheduler:
    """`smq scheduler` (the dispatcher) in its own process group, logging to a file."""

    def __init__(self, env: dict[str, str], logdir: Path, name: str = "scheduler") -> None:
        self.env = env
        self.log_path = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Scheduler:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [SMQ, "scheduler"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_polling(self, timeout: float = 30) -> None:
        """Until the scheduler announced its loop (it has imported everything and opened the database)."""
        deadline = time.monotonic() + timeout
        while "polling every" not in self.log():
            if not self.alive():
                pytest.fail(f"smq scheduler exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"smq scheduler not polling after {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


@dataclass
class Deployment:
    """Workers, and the environment every smq command of the test runs with."""

    db: Db
    broker_url: str
    env: dict[str, str]
    workers: list[Worker]


# ---------------------------------------------------------------------------------------------- reads


def execution(db: Db, machine: str, name: str) -> Any:
    rows = db.rows(
        "SELECT * FROM smq_executions WHERE state_machine_id = :m AND name = :n", m=machine, n=name
    )
    assert len(rows) == 1, f"{len(rows)} executions named {machine}/{name}"
    return rows[0]


def history(db: Db, execution_id: str) -> list[tuple[str, str, str | None]]:
    """(state, status, error) of every history row, in order."""
    return [
        (row.state_name, row.status, row.error)
        for row in db.rows(
            "SELECT state_name, status, error FROM smq_history WHERE execution_id = :e ORDER BY sequence",
            e=execution_id,
        )
    ]


def waits(db: Db, execution_id: str) -> list[Any]:
    return db.rows("SELECT * FROM smq_waits WHERE execution_id = :e ORDER BY created_at", e=execution_id)
