"""Handlers of the waiting tier, loaded by the workers through SMQ_HANDLERS (imported by file path) and
by in-process runs. Names start with `wt-` so they never collide with another tier's handlers.

Every handler's result depends on its payload only (never on the worker, pid or time), so a recovered
run and an uninterrupted run of the same input produce the same output. Evidence of what really ran
goes to files named in the payload: one line per call in `calls`, the task token in `token_file`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from smq import Running, Succeeded, SyncJob, TaskContext, TaskError, default_registry, handler


def _append(path: str | None, line: str) -> None:
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())  # one short O_APPEND write: lines never interleave
    finally:
        os.close(fd)


def _record(payload: Any, ctx: TaskContext) -> None:
    if isinstance(payload, dict):
        _append(payload.get("calls"), f"{ctx.execution_name} {ctx.state_name} {ctx.attempt}")


@handler("wt-step")
def step(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """A deterministic step: `n` doubled, plus the running `acc` extended with this state's name."""
    _record(payload, ctx)
    return {"n": payload.get("n", 0) * 2, "acc": [*payload.get("acc", []), ctx.state_name]}


@handler("wt-slow")
def slow(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Write `started` (this process's pid), then wait until the file `flag` exists or `seconds` pass."""
    _record(payload, ctx)
    Path(payload["started"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + float(payload.get("seconds", 20))
    flag = Path(payload["flag"])
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"slow": "done", "n": payload.get("n", 0) + 1}


@handler("wt-fail-until-flag")
def fail_until_flag(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Fail with Flaky.NotYet until the file `flag` exists."""
    _record(payload, ctx)
    if not Path(payload["flag"]).exists():
        raise TaskError("Flaky.NotYet", f"flag file {payload['flag']} does not exist yet")
    return {"fixed": True}


@handler("wt-token-out")
def token_out(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Hand the callback token over: `token_file` gets `<token from Parameters> <ctx.task_token>`."""
    _record(payload, ctx)
    _append(payload["token_file"], f"{payload.get('token')} {ctx.task_token}")
    return {"ignored": True}


def _job_started(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    _record(payload, ctx)
    return {"flag": payload["flag"], "checks": payload.get("checks")}


def _job_status(job: dict[str, Any], ctx: TaskContext) -> Any:
    """Succeeded once the file `flag` exists (its text is the output); each check is a line in `checks`."""
    _append(job.get("checks"), f"{ctx.execution_name} check")
    flag = Path(job["flag"])
    return Succeeded({"flag": flag.read_text()}) if flag.exists() else Running()


# A `.sync` job: started once, then checked on durable timers (0.3 s, doubling up to 1 s) until its
# flag file exists.
default_registry.register("wt-job.sync", SyncJob(_job_started, _job_status, interval=0.3, max_interval=1.0))
