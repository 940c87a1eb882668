"""Commands that answer what executions wait for: `smq message send`, `smq task success|failure|heartbeat`.

Whatever becomes RUNNING again is enqueued for the workers when SMQ_BROKER_URL is set, or run in this
process otherwise (give --handlers then).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from smq.cli.common import (
    EXIT_NOT_SUCCEEDED,
    EXIT_WRONG_STATE,
    echo_json,
    handlers_option,
    json_option,
    load_settings,
    open_repository,
    parse_json_argument,
    settings_and_repository,
)
from smq.cli.exits import CommandGroup
from smq.execution.operations import Operations, Resumed
from smq.repository.waits import WaitStore, Woken


def _value(text: str) -> Any:
    """`--value 42` is the number, `--value '"42"'` the string, `--value order-7` a plain string."""
    try:
        return parse_json_argument(text, "--value")
    except click.UsageError:
        return text


@click.group(cls=CommandGroup)
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
    settings, repository = settings_and_repository(handler_modules)
    resumed = Operations(repository, settings).send_message(key, _value(value_text), data)
    if as_json:
        echo_json(resumed.to_dict())
    elif resumed.matched:
        for w in resumed.executions:
            click.echo(f"{_what(w)} {w.execution_id} {w.state_machine_id}/{w.name}")
    else:
        click.echo(f"no match: no execution waits on {key}={value_text} (the message is recorded)")
    delivered = any(not w.undelivered for w in resumed.executions)
    sys.exit(0 if delivered else EXIT_NOT_SUCCEEDED)


def _what(woken: Woken) -> str:
    """How an answer reached its execution: it woke it, it is held for it (it was running), or its
    branch no longer waits for it (recorded, shown by `smq executions show`)."""
    if woken.undelivered:
        return "undelivered (its branch no longer waits for it; see smq executions show) to"
    return "held for running execution" if woken.held else "resumed"


@click.group(cls=CommandGroup)
def task() -> None:
    """Answer callback tasks (`.waitForTaskToken`): success, failure, heartbeat."""


def _answer(
    token: str, answer: Callable[[Operations], Resumed], handler_modules: tuple[str, ...], as_json: bool
) -> None:
    settings, repository = settings_and_repository(handler_modules)
    resumed = answer(Operations(repository, settings))  # UnknownToken: exit 3, TokenNotWaiting: exit 4
    woken = resumed.executions[0]
    if as_json:
        echo_json({"execution_id": woken.execution_id, "resolution": woken.resolution, **resumed.to_dict()})
    else:
        click.echo(
            f"{woken.resolution}: {_what(woken)} {woken.execution_id} {woken.state_machine_id}/{woken.name}"
        )
    if woken.undelivered:
        sys.exit(EXIT_WRONG_STATE)


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
    due = WaitStore(open_repository(settings).engine).heartbeat(token)
    if as_json:
        echo_json({"token": token, "due_at": due.isoformat() if due else None})
    else:
        click.echo(f"heartbeat recorded; next deadline {due.isoformat() if due else 'none'}")
