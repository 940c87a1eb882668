"""Commands that wake, recover and restart executions: `smq message`, `smq task`, `smq redrive`,
`smq recover`, `smq scheduler`.

Whatever becomes RUNNING again is enqueued for the workers when SMQ_BROKER_URL is set, or run in this
process otherwise (give --handlers then).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    continue_queue_option,
    echo_json,
    fail,
    handlers_option,
    json_option,
    load_handlers,
    load_settings,
    open_repository,
    parse_json_argument,
)
from smq.engine.errors import SmqError
from smq.engine.handlers import default_registry
from smq.execution.continuation import continue_executions
from smq.execution.dispatcher import Dispatcher
from smq.execution.operations import Operations, Resumed
from smq.execution.recovery import continuations, scan
from smq.repository.waits import WaitStore, Woken
from smq.settings import Settings, redact


def _value(text: str) -> Any:
    """`--value 42` is the number, `--value '"42"'` the string, `--value order-7` a plain string."""
    try:
        return parse_json_argument(text, "--value")
    except click.UsageError:
        return text


def _setup(handler_modules: tuple[str, ...]) -> tuple[Settings, Any]:
    settings = load_settings()
    if not settings.broker_url:
        load_handlers(settings, handler_modules)
    return settings, open_repository(settings)


@click.group()
def message() -> None:
    """Messages for executions parked on a Message state."""


@message.command("send")
@click.option("--key", required=True, help="The CorrelationKey the Message state waits on.")
@click.option("--value", "value_text", required=True, help="The correlation value (JSON, or a plain string).")
@click.option(
    "--data", "data_text", metavar="JSON|@FILE", help="The message data: the state's result (default {})."
)
@handlers_option
@json_option
def send_message(
    key: str, value_text: str, data_text: str | None, handler_modules: tuple[str, ...], as_json: bool
) -> None:
    """Deliver a message: every execution waiting on KEY and VALUE resumes. A message that matches none
    is recorded and answered "no match" (exit 1)."""
    data = parse_json_argument(data_text, "--data", default={})
    settings, repository = _setup(handler_modules)
    resumed = Operations(repository, settings).send_message(key, _value(value_text), data)
    if as_json:
        echo_json(resumed.to_dict())
    elif resumed.matched:
        for w in resumed.executions:
            click.echo(f"{_what(w)} {w.execution_id} {w.state_machine_id}/{w.name}")
    else:
        click.echo(f"no match: no execution waits on {key}={value_text} (the message is recorded)")
    sys.exit(0 if resumed.matched else EXIT_NOT_SUCCEEDED)


def _what(woken: Woken) -> str:
    """How an answer reached its execution: it woke it, or it is held for it (it was running)."""
    return "held for running execution" if woken.held else "resumed"


@click.group()
def task() -> None:
    """Answer callback tasks (`.waitForTaskToken`): success, failure, heartbeat."""


def _answer(
    token: str, answer: Callable[[Operations], Resumed], handler_modules: tuple[str, ...], as_json: bool
) -> None:
    settings, repository = _setup(handler_modules)
    try:
        resumed = answer(Operations(repository, settings))
    except SmqError as exc:
        fail(f"smq task: {exc}", EXIT_NOT_SUCCEEDED)
    woken = resumed.executions[0]
    if as_json:
        echo_json({"execution_id": woken.execution_id, "resolution": woken.resolution, **resumed.to_dict()})
    else:
        click.echo(
            f"{woken.resolution}: {_what(woken)} {woken.execution_id} {woken.state_machine_id}/{woken.name}"
        )


@task.command("success")
@click.argument("token")
@click.option("--output", "output_text", metavar="JSON|@FILE", help="The task's result (default {}).")
@handlers_option
@json_option
def task_success(
    token: str, output_text: str | None, handler_modules: tuple[str, ...], as_json: bool
) -> None:
    """The task succeeded with OUTPUT."""
    output = parse_json_argument(output_text, "--output", default={})
    _answer(token, lambda ops: ops.task_success(token, output), handler_modules, as_json)


@task.command("failure")
@click.argument("token")
@click.option(
    "--error", default="States.TaskFailed", show_default=True, help="Error name (Retry/Catch match it)."
)
@click.option("--cause", default=None, help="Human-readable cause.")
@handlers_option
@json_option
def task_failure(
    token: str, error: str, cause: str | None, handler_modules: tuple[str, ...], as_json: bool
) -> None:
    """The task failed with ERROR and CAUSE."""
    _answer(token, lambda ops: ops.task_failure(token, error, cause), handler_modules, as_json)


@task.command("heartbeat")
@click.argument("token")
@json_option
def task_heartbeat(token: str, as_json: bool) -> None:
    """The task is still working: push its HeartbeatSeconds deadline out."""
    settings = load_settings()
    repository = open_repository(settings)
    try:
        due = WaitStore(repository.engine).heartbeat(token)
    except SmqError as exc:
        fail(f"smq task heartbeat: {exc}", EXIT_NOT_SUCCEEDED)
    if as_json:
        echo_json({"token": token, "due_at": due.isoformat() if due else None})
    else:
        click.echo(f"heartbeat recorded; next deadline {due.isoformat() if due else 'none'}")


@click.command()
@click.argument("execution")
@continue_queue_option
@handlers_option
@json_option
def redrive(execution: str, queue: str | None, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """Restart a FAILED, TIMED_OUT or ABORTED execution from the state that failed (EXECUTION: id or
    STATE_MACHINE_ID/NAME). Succeeded states are kept and not run again."""
    settings, repository = _setup(handler_modules)
    try:
        final, continued = Operations(repository, settings).redrive(execution, queue)
    except SmqError as exc:
        fail(f"smq redrive: {exc}")
    if as_json:
        echo_json(
            {"execution_id": final.execution_id, "status": final.status, "continuations": continued.to_dict()}
        )
    else:
        where = "enqueued" if continued.enqueued else f"ran here: {final.status}"
        click.echo(f"redriven {final.execution_id} ({where})")


@click.command()
@click.option("--dry-run", is_flag=True, help="List what would be recovered; change nothing.")
@handlers_option
@json_option
def recover(dry_run: bool, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """One recovery scan: take over RUNNING executions whose lease expired (their process is gone)."""
    settings, repository = _setup(handler_modules)
    found = scan(
        repository,
        lease_seconds=settings.lease_seconds,
        default_attempts=settings.recovery_max_attempts,
        grace=settings.wake_grace,
        dry_run=dry_run,
    )
    continued = continue_executions(repository, continuations(found), settings, handlers=default_registry)
    if as_json:
        echo_json(
            {
                "dry_run": dry_run,
                "recovered": [r.to_dict() for r in found],
                "continuations": continued.to_dict(),
            }
        )
        return
    for r in found:
        click.echo(
            f"{r.action:13} {r.execution_id} {r.state_machine_id}/{r.name} in {r.state} (attempt {r.attempt})"
        )
    click.echo(f"{len(found)} execution(s) {'would be ' if dry_run else ''}recovered")


@click.command()
@click.option("--once", is_flag=True, help="One pass (fire due timers, scan for crashes), then exit.")
@click.option(
    "--health-file",
    type=click.Path(dir_okay=False),
    help="Touch this file after every successful pass (for container health checks).",
)
@handlers_option
@json_option
def scheduler(once: bool, health_file: str | None, handler_modules: tuple[str, ...], as_json: bool) -> None:
    """The dispatcher: fire durable timers when due and recover crashed executions, until SIGTERM."""
    settings, repository = _setup(handler_modules)
    dispatcher = Dispatcher(repository, settings, handlers=default_registry, health_file=health_file)
    if once:
        tick = dispatcher.tick(recover=True)
        if as_json:
            echo_json(tick.to_dict())
        else:
            click.echo(f"{len(tick.woken)} timer(s) fired, {len(tick.recovered)} execution(s) recovered")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    target = f"enqueue to {redact(settings.broker_url)}" if settings.broker_url else "in-process"
    click.echo(
        f"smq scheduler: polling every {settings.scheduler_interval:g}s, recovery scan every "
        f"{settings.lease_seconds / 2:g}s ({target})",
        err=True,
    )
    dispatcher.run(stop)
