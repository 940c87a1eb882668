"""The console's actions: each has a GET page that says what it will do and asks to confirm, and a
POST that does it, only for a signed-in user and with the session's CSRF token. Every action calls
the same code as its CLI command (`Operations`, `smq.distributed.dead_letter_actions`), which records
it with the execution's history."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from smq.engine.errors import SmqError
from smq.repository.queue_records import DeadLetters
from smq.repository.records import NotFound
from smq.web.console import Console, Forbidden
from smq.web.pages import console_of, not_found


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str = "text"  # text, json
    default: str = ""
    help: str = ""


@dataclass(frozen=True)
class Action:
    title: str
    explains: str
    button: str
    fields: tuple[Field, ...] = ()
    danger: bool = False


EXECUTION_ACTIONS = {
    "redrive": Action(
        "Redrive",
        "Restart this execution from the state that failed. Succeeded states are kept and not run again.",
        "Redrive",
    ),
    "stop": Action(
        "Stop",
        "Abort this execution now (status ABORTED) and cancel what it waits for. A worker running it "
        "steps aside at its next checkpoint.",
        "Stop the execution",
        (
            Field("error", "Error", default="States.Aborted"),
            Field("cause", "Cause", default="stopped by an operator"),
        ),
        danger=True,
    ),
    "resume": Action("Resume", "Resume this PAUSED execution from its last checkpoint.", "Resume"),
}
DEAD_ACTIONS = {
    "retry": Action(
        "Retry",
        "Publish this task again, unchanged. Its execution resumes from its last checkpoint; the dead "
        "letter is removed once published.",
        "Retry the task",
    ),
    "purge": Action(
        "Purge",
        "Delete this dead letter for good. Its execution, if any, stays FAILED.",
        "Purge the dead letter",
        danger=True,
    ),
}
ANSWERS = {
    "message": Action(
        "Send a message",
        "Deliver a message: every execution waiting on this key and value resumes; the data is the "
        "Message state's result.",
        "Send",
        (Field("data", "Data (JSON)", "json", "{}"),),
    ),
    "success": Action(
        "Send task success",
        "The callback task succeeds with this output; its execution resumes.",
        "Send success",
        (Field("output", "Output (JSON)", "json", "{}"),),
    ),
    "failure": Action(
        "Send task failure",
        "The callback task fails with this error and cause (Retry and Catch apply).",
        "Send failure",
        (Field("error", "Error", default="States.TaskFailed"), Field("cause", "Cause")),
        danger=True,
    ),
}
FREE_MESSAGE = Action(
    "Send a message",
    "Deliver a message to every execution waiting on KEY and VALUE (VALUE is JSON, or plain text).",
    "Send",
    (
        Field("key", "Correlation key"),
        Field("value", "Correlation value"),
        Field("data", "Data (JSON)", "json", "{}"),
    ),
)


class InvalidInput(SmqError):
    """A form field the action cannot use; the message names it."""


def _json_field(form: Any, name: str) -> Any:
    text = str(form.get(name) or "").strip() or "{}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None


def _value(text: str) -> Any:
    """As `smq message send --value`: JSON when it parses, the plain text otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _flash(request: Request, message: str) -> None:
    request.session["flash"] = message


def _confirm(
    request: Request,
    action: Action,
    subject: str,
    back: str,
    *,
    error: str | None = None,
    values: dict[str, str] | None = None,
    hidden: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    console = console_of(request)
    return console.render(
        request,
        "confirm.html",
        status_code=status_code,
        title=f"{action.title}: {subject}",
        action=action,
        subject=subject,
        back=back,
        error=error,
        values=values or {field.name: field.default for field in action.fields},
        hidden=hidden or {},
        allowed=not console.config.read_only and console.user(request) is not None,
    )


async def _perform(
    request: Request,
    action: Action,
    subject: str,
    back: str,
    run: Callable[[Console, str, Any], str],
    *,
    hidden: dict[str, str] | None = None,
) -> Response:
    """Check who and the CSRF token, run `run(console, actor, form)` off the event loop; its result is
    where to go next. A refusal or an error re-shows the confirmation with the reason."""
    console = console_of(request)
    form = await request.form()
    values = {field.name: str(form.get(field.name) or "") for field in action.fields}
    try:
        console.check_csrf(request, form)
        actor = console.actor(request)
    except Forbidden as exc:
        return _confirm(
            request, action, subject, back, error=str(exc), values=values, hidden=hidden, status_code=403
        )
    try:
        target = await run_in_threadpool(run, console, actor, form)
    except (SmqError, ValueError) as exc:
        return _confirm(
            request, action, subject, back, error=str(exc), values=values, hidden=hidden, status_code=409
        )
    return RedirectResponse(target, status_code=303)


# ---------------------------------------------------------------------------------------------- executions


async def execution_action(request: Request) -> Response:
    console = console_of(request)
    name = request.path_params["action"]
    action = EXECUTION_ACTIONS.get(name)
    if action is None:
        return not_found(request, f"no action {name!r} (redrive, stop, resume)")
    try:
        record = console.repository.get_execution(request.path_params["execution_id"])
    except NotFound as exc:
        return not_found(request, str(exc))
    subject = f"{record.state_machine_id}/{record.name} ({record.status})"
    back = f"/executions/{quote(record.execution_id)}"
    if request.method == "GET":
        return _confirm(request, action, subject, back)

    def run(console: Console, actor: str, form: Any) -> str:
        operations = console.operations_for(actor)
        if name == "redrive":
            final, _ = operations.redrive(record.execution_id)
            _flash(request, f"redriven: now {final.status}")
        elif name == "resume":
            final, _ = operations.resume(record.execution_id)
            _flash(request, f"resumed: now {final.status}")
        else:
            error = str(form.get("error") or "").strip() or "States.Aborted"
            cause = str(form.get("cause") or "").strip() or None
            final = operations.stop(record.execution_id, error=error, cause=cause)
            _flash(request, f"stopped: now {final.status}")
        return back

    return await _perform(request, action, subject, back, run)


# ---------------------------------------------------------------------------------------------- dead letters


async def dead_action(request: Request) -> Response:
    from smq.distributed.dead_letter_actions import purge_dead_letters, retry_dead_letters

    console = console_of(request)
    name = request.path_params["action"]
    action = DEAD_ACTIONS.get(name)
    if action is None:
        return not_found(request, f"no action {name!r} (retry, purge)")
    task_id = request.path_params["task_id"]
    store = DeadLetters(console.repository.engine)
    letter = store.get(task_id)
    if letter is None:
        return not_found(request, f"no dead letter with task id {task_id!r}")
    subject = f"dead letter {task_id} ({letter.reason})"
    back = f"/dead/{quote(task_id, safe='')}"
    if request.method == "GET":
        return _confirm(request, action, subject, back)

    def run(console: Console, actor: str, form: Any) -> str:
        execution = None
        if letter.state_machine_id and letter.execution_name:
            execution = console.repository.find_execution(letter.state_machine_id, letter.execution_name)
        if name == "purge":
            purge_dead_letters(console.repository, store, [letter], actor=actor)
            _flash(request, f"dead letter {task_id} purged")
            return "/dead"
        if not console.settings.broker_url:
            raise InvalidInput("retrying a dead letter publishes it to the workers: set SMQ_BROKER_URL")
        report = retry_dead_letters(console.repository, store, [letter], actor=actor)
        if report.failed:
            raise InvalidInput(report.failed[0]["error"])
        _flash(request, f"dead letter {task_id} published again as task {report.retried[0]['new_task_id']}")
        if execution is None:
            execution = console.repository.find_execution(
                letter.state_machine_id or "", letter.execution_name or ""
            )
        return f"/executions/{quote(execution.execution_id)}" if execution is not None else "/dead"

    return await _perform(request, action, subject, back, run)


# ---------------------------------------------------------------------------------------------- waits


async def answer_wait(request: Request) -> Response:
    """Answer one open wait: a message for a Message state, success or failure for a callback task."""
    console = console_of(request)
    wait_id = request.query_params.get("wait") or ""
    name = request.path_params["action"]
    target = console.queries.wait_target(wait_id)
    if target is None:
        return not_found(request, f"no open wait {wait_id!r} (answered, timed out or stopped meanwhile)")
    allowed = {"message": ("message",), "callback": ("success", "failure")}.get(target["kind"], ())
    if name not in allowed:
        return not_found(request, f"a {target['kind']} wait takes no {name!r} answer")
    action = ANSWERS[name]
    execution = console.repository.get_execution(target["execution_id"])
    what = (
        f"{target['correlation_key']}={target['correlation_value']}" if name == "message" else "callback task"
    )
    subject = f"{execution.state_machine_id}/{execution.name}, {what}"
    back = f"/executions/{quote(execution.execution_id)}"
    if request.method == "GET":
        return _confirm(request, action, subject, back, hidden={"wait": wait_id})

    def run(console: Console, actor: str, form: Any) -> str:
        operations = console.operations_for(actor)
        if name == "message":
            data = _json_field(form, "data")
            resumed = operations.send_message(
                target["correlation_key"], json.loads(target["correlation_value"]), data
            )
        elif name == "success":
            resumed = operations.task_success(target["token"], _json_field(form, "output"))
        else:
            error = str(form.get("error") or "").strip() or "States.TaskFailed"
            resumed = operations.task_failure(target["token"], error, str(form.get("cause") or "") or None)
        _flash(
            request,
            f"answered: {len(resumed.executions)} execution(s) resumed or held{_undelivered(resumed)}",
        )
        return back

    return await _perform(request, action, subject, back, run, hidden={"wait": wait_id})


def _undelivered(resumed: Any) -> str:
    """What a flash adds when an answer reached no waiting branch (recorded, shown on the execution)."""
    count = sum(1 for woken in resumed.executions if woken.undelivered)
    return f", {count} undelivered (its branch no longer waits: see the execution)" if count else ""


async def send_message(request: Request) -> Response:
    """A message to whoever waits on KEY and VALUE (the `smq message send` form)."""
    back = "/waiting"
    if request.method == "GET":
        return _confirm(request, FREE_MESSAGE, "a message", back)

    def run(console: Console, actor: str, form: Any) -> str:
        key = str(form.get("key") or "").strip()
        value = str(form.get("value") or "").strip()
        if not key or not value:
            raise InvalidInput("key and value: both are needed")
        resumed = console.operations_for(actor).send_message(key, _value(value), _json_field(form, "data"))
        _flash(
            request,
            f"message {key}={value}: "
            + (
                f"{len(resumed.executions)} execution(s) resumed{_undelivered(resumed)}"
                if resumed.matched
                else "no match (recorded)"
            ),
        )
        return back

    return await _perform(request, FREE_MESSAGE, "a message", back, run)


# ---------------------------------------------------------------------------------------------- sign in


async def login(request: Request) -> Response:
    console = console_of(request)
    target = request.query_params.get("next") or "/"
    if not target.startswith("/") or target.startswith("//"):
        target = "/"  # only pages of this console: never an open redirect
    if request.method == "GET":
        return console.render(request, "login.html", title="Sign in", next=target, error=None)
    form = await request.form()
    try:
        console.check_csrf(request, form)
    except Forbidden as exc:
        return console.render(
            request, "login.html", status_code=403, title="Sign in", next=target, error=str(exc)
        )
    name, password = str(form.get("user") or ""), str(form.get("password") or "")
    if console.config.read_only or not await run_in_threadpool(console.config.authenticate, name, password):
        error = (
            "read-only console: no users configured" if console.config.read_only else "wrong user or password"
        )
        return console.render(
            request, "login.html", status_code=401, title="Sign in", next=target, error=error
        )
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
    request.session["user"] = name
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    try:
        console.check_csrf(request, form)
    except Forbidden as exc:
        return console.render(request, "error.html", status_code=403, title="Forbidden", message=str(exc))
    request.session.clear()
    return RedirectResponse("/", status_code=303)
