"""Handlers loaded by the test workers through SMQ_HANDLERS (imported by file path, not as a package).

Each one leaves evidence the tests can check from the outside: the worker that ran it (SMQ_TEST_WORKER,
set per worker process), a line appended to a calls file, a marker file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from smq import TaskContext, TaskError, handler
from smq.engine.errors import InfrastructureError


def _worker() -> dict[str, Any]:
    return {"worker": os.environ.get("SMQ_TEST_WORKER", "?"), "pid": os.getpid()}


def _record_call(payload: dict[str, Any], ctx: TaskContext) -> None:
    calls = payload.get("calls") if isinstance(payload, dict) else None
    if calls:
        line = f"{ctx.execution_name} {ctx.state_name} {os.environ.get('SMQ_TEST_WORKER', '?')}\n"
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one short O_APPEND write: lines never interleave
        finally:
            os.close(fd)


@handler("whoami")
def whoami(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    """The worker that ran this state."""
    return _worker()


@handler("nap")
def nap(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep `ms` milliseconds (default 50): keeps executions in flight long enough to be interrupted."""
    time.sleep(float(payload.get("ms", 50)) / 1000)
    return _worker()


@handler("count-calls")
def count_calls(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Append `execution state worker` to the file named by `calls`: how often a state really ran."""
    _record_call(payload, ctx)
    return _worker()


@handler("infra-while-flag")
def infra_while_flag(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Raise InfrastructureError (retried by the task, not an ASL error) while the file `flag` exists."""
    _record_call(payload, ctx)
    flag = Path(payload["flag"])
    if flag.exists():
        raise InfrastructureError(f"simulated outage: flag file {flag} exists")
    return _worker()


@handler("slow")
def slow(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Create the file `started`, then sleep `seconds`: the test interrupts the worker meanwhile."""
    Path(payload["started"]).write_text(str(os.getpid()))
    time.sleep(float(payload.get("seconds", 2)))
    return {**_worker(), "finished_at": time.time()}


@handler("ignore-soft-limit")
def ignore_soft_limit(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Sleep `seconds`, swallowing the soft time limit, so that only the hard limit can stop it."""
    _record_call(payload, ctx)
    deadline = time.monotonic() + float(payload.get("seconds", 10))
    while time.monotonic() < deadline:
        try:
            time.sleep(max(0.0, deadline - time.monotonic()))
        except BaseException:  # noqa: B036 - the soft time limit, on purpose
            continue
    return _worker()


@handler("die-while-flag")
def die_while_flag(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """SIGKILL this pool process while the file `flag` exists (an OOM kill, a segfault)."""
    _record_call(payload, ctx)
    if Path(payload["flag"]).exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return _worker()


@handler("infra-first-calls")
def infra_first_calls(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Raise InfrastructureError on the first `fail` calls of this execution's state (counted in the
    calls file), then succeed: a task that needs exactly fail + 1 attempts to get past this state."""
    _record_call(payload, ctx)
    line = f"{ctx.execution_name} {ctx.state_name} "
    with open(payload["calls"]) as calls:
        made = sum(1 for text in calls if text.startswith(line))
    if made <= int(payload.get("fail", 1)):
        raise InfrastructureError(f"simulated outage on call {made} of {ctx.state_name}")
    return _worker()


@handler("hold-until-go")
def hold_until_go(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Create `started`, wait (at most 60 s) until the file `go` exists, record the call and return:
    the test takes the database away while the handler runs, so its result meets no database."""
    Path(payload["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not Path(payload["go"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _record_call(payload, ctx)
    return {**_worker(), "held": True}


@handler("hold-then-fail-infra")
def hold_then_fail_infra(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Create `started`, wait for the file `go`, then raise InfrastructureError: with no retries left
    the task is dead-lettered at that moment, which the test has made a database outage."""
    Path(payload["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not Path(payload["go"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _record_call(payload, ctx)
    raise InfrastructureError("simulated: a service is down as well")


@handler("reject-while-flag")
def reject_while_flag(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fail the workflow (an ASL error, not an infrastructure one) while the file `flag` exists; the
    cause quotes the input's `note` (the console test puts HTML there)."""
    if Path(payload["flag"]).exists():
        raise TaskError("Card.Declined", f"card declined for {payload.get('note', '')}")
    return _worker()
