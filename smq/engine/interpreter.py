"""The interpreter: one state at a time, from a Cursor to a Step.

`run_state(machine, cursor, runtime)` runs the state the cursor points at and returns either the next
cursor or the end of the execution, plus the history entries it produced. It keeps no state of its
own between calls, which is what makes executions resumable from any checkpoint: persistence, crash
recovery, redrive and long waits are drivers around this function, not other interpreters.

Data flow follows AWS exactly: InputPath → Parameters → (task) → ResultSelector → ResultPath (into the
raw input) → OutputPath; `null` InputPath/OutputPath give `{}` and a `null` ResultPath keeps the input.

Message states and callback Tasks (`.waitForTaskToken`) take two steps: the first parks the cursor
(no history entry; `cursor.pending` says what it waits for, see `smq.engine.cursor`), the second runs
once the layer above has added a delivery to `pending` and finishes the state as usual. A parked cursor
given to `run_state` comes back unchanged. `.sync` Tasks take a step to start their job and one per check
(`smq.engine.sync_steps`); `states:startExecution` starts a nested execution (`smq.engine.nested`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from typing import Any

from smq.engine import errors
from smq.engine.cursor import (
    CAUGHT,
    FAILED,
    RETRIED,
    SUCCEEDED,
    TIMED_OUT,
    Cursor,
    HistoryEntry,
    Step,
    check_delivery,
    is_parked,
    iso,
)
from smq.engine.errors import BranchesFailed, BranchesParked, StatesError, error_matches
from smq.engine.handlers import LAMBDA_INVOKE
from smq.engine.invoke import call_handler, lambda_error
from smq.engine.jsonata import Expression, unexpected_type
from smq.engine.jsontext import compact
from smq.engine.model import (
    ChoiceState,
    FailState,
    IntOrPath,
    Machine,
    MapState,
    MessageState,
    NullPath,
    ParallelState,
    PassState,
    ResultState,
    State,
    SucceedState,
    TaskState,
    WaitState,
)
from smq.engine.paths import MISSING, Path, PathNotFound, Scope, set_at
from smq.engine.runtime import Runtime
from smq.engine.sync import poll_pending
from smq.engine.sync_steps import task_context
from smq.engine.timestamps import parse_timestamp

MAX_WAIT_SECONDS = 2**31 - 1  # AWS rejects a Wait longer than this ("delay is too long")
MAX_LONG = 2**63 - 1  # a `*Path` number must fit a Java long


def runtime_error(state: State, message: str) -> StatesError:
    return StatesError(
        errors.RUNTIME, f"An error occurred while executing the state '{state.name}'. {message}"
    )


def context_factory(cursor: Cursor, state: State, entered_at: float, extra: dict[str, Any] | None = None):
    """A builder for the Context object; called only if a path actually reads `$$`."""

    def build() -> dict[str, Any]:
        state_ctx: dict[str, Any] = {"Name": state.name, "EnteredTime": iso(entered_at)}
        if isinstance(state, (TaskState, ParallelState, MapState)):
            state_ctx["RetryCount"] = cursor.attempt - 1
        context: dict[str, Any] = {
            "Execution": cursor.execution.execution_context(),
            "StateMachine": cursor.execution.state_machine_context(),
            "State": state_ctx,
        }
        if extra:
            context.update(extra)
        return context

    return build


def _apply_path(state: State, path: Path | NullPath | None, scope: Scope) -> Any:
    """InputPath/OutputPath: absent is `$`, null gives `{}`, a path that selects nothing is States.Runtime."""
    if path is None:
        return scope.data
    if isinstance(path, NullPath):
        return {}
    try:
        return scope.read(path)
    except PathNotFound:
        raise runtime_error(state, f"Invalid path '{path.text}' : No results for path: {path.text}") from None


def apply_input_path(state: State, scope: Scope) -> Any:
    return _apply_path(state, state.input_path, scope)


def apply_output_path(state: State, scope: Scope) -> Any:
    return _apply_path(state, state.output_path, scope)


def apply_result_path(state: ResultState | MessageState, raw_input: Any, result: Any) -> Any:
    mode = state.result_path_mode
    if mode == "replace":
        return result
    if mode == "discard":
        return raw_input
    assert state.result_path is not None and state.result_path.keys is not None
    try:
        return set_at(raw_input, state.result_path.keys, result)
    except PathNotFound:
        raise StatesError(
            errors.RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath '{state.result_path.text}' to input {_preview(raw_input)} "
            f"in state '{state.name}'",
        ) from None


def check_size(state: State, value: Any, runtime: Runtime) -> None:
    """States.DataLimitExceeded when a state's output is above the payload limit."""
    if runtime.payload_limit is not None:
        _sized_json(state, value, runtime, "output")


def _check_text_size(state: State, text: str, runtime: Runtime, what: str) -> None:
    limit = runtime.payload_limit
    if limit is not None and len(text) > limit // 4 and len(text.encode("utf-8")) > limit:
        raise StatesError(
            errors.DATA_LIMIT_EXCEEDED,
            f"The {what} of state '{state.name}' is {len(text.encode('utf-8'))} bytes, "
            f"exceeding the maximum number of bytes ({limit}) service limit.",
        )


def _sized_json(state: State, value: Any, runtime: Runtime, what: str) -> str:
    text = compact(value)
    _check_text_size(state, text, runtime, what)
    return text


def resolve_number(
    state: State,
    spec: IntOrPath | None,
    scope: Scope,
    *,
    integer: bool = True,
    minimum: float = 0,
    maximum: float | None = None,
    allow_numeric_string: bool = False,
) -> float | None:
    """The value of a `X` / `XPath` field pair; a bad path value is States.Runtime, naming the field."""
    if spec is None:
        return None
    if spec.expression is not None:
        return _resolve_expression(state, spec.expression, scope, integer, minimum, maximum)
    if spec.path is None:
        return spec.value
    field = f"{spec.field_name}Path"
    try:
        value = scope.read(spec.path)
    except PathNotFound:
        raise runtime_error(
            state, f"The {field} parameter does not reference an input value: {spec.path.text}"
        ) from None
    if allow_numeric_string and isinstance(value, str):
        value = _numeric_string(value, integer)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (
        not numeric
        or (integer and not float(value).is_integer())
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        kind = "a long value" if integer else "a number"
        raise runtime_error(
            state, f"The {field} parameter cannot be parsed as {kind}: {spec.path.text} == {value!r}"
        )
    return int(value) if integer else float(value)


def _numeric_string(text: str, integer: bool) -> Any:
    """A number written as a string ("3", "12.5"), as AWS reads the `*Path` fields; else the text."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    if not integer:
        try:
            number = float(text)
        except ValueError:
            return text
        if number == number and number not in (float("inf"), float("-inf")):
            return number
    return text


def _resolve_expression(
    state: State, expression: Expression, scope: Scope, integer: bool, minimum: float, maximum: float | None
) -> float:
    """A numeric field given as a JSONata expression: a number of the right kind, else
    States.QueryEvaluationError."""
    value = expression.evaluate(scope)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (integer and not float(value).is_integer()):
        raise unexpected_type(expression, "integer" if integer else "number", value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum:g}" + (f" to {maximum:g}" if maximum is not None else "")
        raise expression.fail(f"returned {compact(value)}, which is not {bound}.")
    return int(value) if integer else float(value)


def _preview(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _entry(
    state: State, cursor: Cursor, status: str, entered_at: float, runtime: Runtime, **fields: Any
) -> HistoryEntry:
    return HistoryEntry(
        state_name=state.name,
        state_type=state.type,
        status=status,
        input=cursor.input,
        entered_at=entered_at,
        exited_at=runtime.clock(),
        attempt=cursor.attempt,
        **fields,
    )


def _advance(
    state: State,
    cursor: Cursor,
    output: Any,
    variables: dict[str, Any],
    entry: HistoryEntry,
    next_state: str | None,
) -> Step:
    if next_state is None:
        return Step([entry], status=SUCCEEDED, output=output)
    return Step(
        [entry],
        cursor=cursor.moved(
            state=next_state,
            input=output,
            variables=variables,
            retry_counts=(),
            attempt=1,
            pending=None,
            not_before=None,
            transitions=cursor.transitions + 1,
            entered_at=None,
            kept_results=None,
        ),
    )


def _assigned(
    variables: dict[str, Any], assign: Callable[[Scope], Any] | None, scope: Scope
) -> dict[str, Any]:
    """Evaluate Assign against the values before this state, then apply all at once (AWS rule)."""
    if assign is None:
        return variables
    updates = assign(scope)
    merged = dict(variables)
    merged.update(updates)
    return merged


# ---------------------------------------------------------------------------------------- entry point


def new_task_token() -> str:
    """A callback task token (`$$.Task.Token`): random, opaque, fresh for every attempt."""
    return uuid.uuid4().hex


def run_state(machine: Machine, cursor: Cursor, runtime: Runtime) -> Step:
    """Run the state `cursor.state` of `machine` once."""
    if is_parked(cursor.pending):
        return Step([], cursor=cursor)  # waiting for a delivery: nothing to do until it comes
    state = machine.states[cursor.state]
    # The state's entry time ($$.State.EnteredTime) survives retries and waits; each history entry
    # still starts when its own attempt did.
    attempt_start = runtime.clock()
    entered_at = cursor.entered_at if cursor.entered_at is not None else attempt_start
    token: str | None = None
    extra: dict[str, Any] | None = None
    if isinstance(state, TaskState) and state.wait_for_token:
        pending = cursor.pending
        token = pending["token"] if isinstance(pending, dict) and "token" in pending else new_task_token()
        extra = {"Task": {"Token": token}}
    scope = Scope(cursor.input, cursor.variables, context_factory(cursor, state, entered_at, extra))
    try:
        if isinstance(state, ResultState):
            return _run_result_state(state, cursor, scope, entered_at, attempt_start, runtime, token)
        if isinstance(state, MessageState):
            return _run_message(state, cursor, scope, entered_at, runtime)
        if isinstance(state, ChoiceState):
            return _run_choice(state, cursor, scope, entered_at, runtime)
        if isinstance(state, WaitState):
            return _run_wait(state, cursor, scope, entered_at, runtime)
        if isinstance(state, SucceedState):
            if state.jsonata:
                output = _jsonata_output(state, scope, cursor.input, runtime)
            else:
                effective = apply_input_path(state, scope)
                output = apply_output_path(state, scope.with_data(effective))
            entry = _entry(state, cursor, SUCCEEDED, entered_at, runtime, output=output)
            return Step([entry], status=SUCCEEDED, output=output)
        if isinstance(state, FailState):
            return _run_fail(state, cursor, scope, entered_at, runtime)
        raise AssertionError(f"unhandled state type {state.type}")
    except StatesError as err:
        # Errors outside a Task/Parallel/Map body (paths, Choice, Wait) cannot be caught: the execution fails.
        entry = _entry(state, cursor, FAILED, attempt_start, runtime, error=err.error, cause=err.cause)
        return Step([entry], status=FAILED, error=err.error, cause=err.cause)


def _run_fail(state: FailState, cursor: Cursor, scope: Scope, entered_at: float, runtime: Runtime) -> Step:
    error, cause = state.error, state.cause
    if state.error_expression is not None:
        error = _string_value(state.error_expression, scope)
    if state.cause_expression is not None:
        cause = _string_value(state.cause_expression, scope)
    for field, expr in (("ErrorPath", state.error_expr), ("CausePath", state.cause_expr)):
        if expr is None:
            continue
        try:
            value = expr(scope)
        except StatesError as exc:
            text = getattr(expr, "__self__", None)
            detail = f" ({text.text})" if text is not None else ""
            raise runtime_error(
                state, f"The {field} field could not be evaluated{detail}: {exc.cause}"
            ) from None
        if not isinstance(value, str):
            raise runtime_error(state, f"The {field} field must select a string, got {_preview(value)}")
        if field == "ErrorPath":
            error = value
        else:
            cause = value
    entry = _entry(state, cursor, FAILED, entered_at, runtime, error=error, cause=cause)
    return Step([entry], status=FAILED, error=error, cause=cause)


def _string_value(expression: Expression, scope: Scope) -> str:
    value = expression.evaluate(scope)
    if not isinstance(value, str):
        raise unexpected_type(expression, "string", value)
    return value


def _jsonata_output(state: State, scope: Scope, default: Any, runtime: Runtime, output: Any = MISSING) -> Any:
    """A JSONata state's output: its Output (or `output`, a rule's or catcher's), else `default`."""
    template = state.output if output is MISSING else output
    if template is None:
        return default
    value = template(scope)
    check_size(state, value, runtime)
    return value


def _run_choice(
    state: ChoiceState, cursor: Cursor, scope: Scope, entered_at: float, runtime: Runtime
) -> Step:
    effective = scope.data if state.jsonata else apply_input_path(state, scope)
    data_scope = scope.with_data(effective)
    for branch in state.branches:
        if branch.predicate(data_scope):
            target, assign, rule_output = branch.next, branch.assign, branch.output
            break
    else:
        if state.default is None:
            raise StatesError(
                errors.NO_CHOICE_MATCHED,
                f"No Choice Rule matched and no Default is given in state '{state.name}'",
            )
        target, assign, rule_output = state.default, state.assign, state.output
    variables = _assigned(cursor.variables, assign, data_scope)
    if state.jsonata:
        output = _jsonata_output(state, scope, effective, runtime, rule_output)
    else:
        output = apply_output_path(state, data_scope)
    entry = _entry(state, cursor, SUCCEEDED, entered_at, runtime, output=output)
    return _advance(state, cursor, output, variables, entry, target)


def _run_wait(state: WaitState, cursor: Cursor, scope: Scope, entered_at: float, runtime: Runtime) -> Step:
    effective = scope.data if state.jsonata else apply_input_path(state, scope)
    data_scope = scope.with_data(effective)
    if cursor.pending is None:
        until = _wake_time(state, data_scope, runtime)
        if until > runtime.clock():
            # Half done: come back at `until`. The driver sleeps (locally) or stores a timer (later).
            return Step(
                [], cursor=cursor.moved(entered_at=entered_at, pending={"until": until}, not_before=until)
            )
    variables = _assigned(cursor.variables, state.assign, data_scope)
    if state.jsonata:
        output = _jsonata_output(state, scope, effective, runtime)
    else:
        output = apply_output_path(state, data_scope)
    entry = _entry(state, cursor, SUCCEEDED, entered_at, runtime, output=output)
    return _advance(state, cursor, output, variables, entry, state.next)


def _run_message(
    state: MessageState, cursor: Cursor, scope: Scope, entered_at: float, runtime: Runtime
) -> Step:
    """smq's Message state, in two steps.

    Entering: InputPath, then the correlation value (CorrelationValuePath read from the effective
    input, or the whole effective input) and the timeout; the cursor parks with `pending` =
    `{"kind": "message", "key": CorrelationKey, "value": V, "until": EPOCH | None}` and no history
    entry. Resumed with `pending["delivery"]`:

    - `{"kind": "message", "data": D}`: D is the state's result: Assign (`$` is D), ResultPath into the
      raw input, OutputPath, then Next/End; one SUCCEEDED entry.
    - `{"kind": "timeout"}`: with TimeoutPath, one TIMED_OUT entry (error States.Timeout, output the
      raw input) and the TimeoutPath state runs next with the state's raw input unchanged, variables
      unchanged (Assign applies only to a received message); without TimeoutPath, one FAILED entry and
      the execution fails with States.Timeout.

    A Message state has no Retry or Catch: errors after delivery (ResultPath, OutputPath, payload
    size) fail the execution as they do for a Wait or a Choice.
    """
    pending = cursor.pending
    if not (isinstance(pending, dict) and pending.get("kind") == "message"):
        effective = apply_input_path(state, scope)
        data_scope = scope.with_data(effective)
        value = effective
        if state.correlation_value_path is not None:
            try:
                value = data_scope.read(state.correlation_value_path)
            except PathNotFound:
                raise runtime_error(
                    state,
                    "The CorrelationValuePath parameter does not reference an input value: "
                    f"{state.correlation_value_path.text}",
                ) from None
        timeout = resolve_number(state, state.timeout, data_scope, minimum=1)
        until = None if timeout is None else runtime.clock() + timeout
        waiting = {"kind": "message", "key": state.correlation_key, "value": value, "until": until}
        return Step([], cursor=cursor.moved(pending=waiting, not_before=None, entered_at=entered_at))
    delivery = pending.get("delivery")
    check_delivery("message", delivery)
    assert isinstance(delivery, dict)
    if delivery["kind"] == "timeout":
        cause = (
            f"The Message state '{state.name}' received no message for {state.correlation_key} = "
            f"{_preview(pending.get('value'))} before its timeout"
        )
        if state.timeout_next is None:
            entry = _entry(state, cursor, FAILED, entered_at, runtime, error=errors.TIMEOUT, cause=cause)
            return Step([entry], status=FAILED, error=errors.TIMEOUT, cause=cause)
        entry = _entry(
            state,
            cursor,
            TIMED_OUT,
            entered_at,
            runtime,
            output=cursor.input,
            error=errors.TIMEOUT,
            cause=cause,
        )
        return _advance(state, cursor, cursor.input, cursor.variables, entry, state.timeout_next)
    data = _isolated(state, delivery["data"], runtime, "message data")
    variables = _assigned(cursor.variables, state.assign, scope.with_data(data))
    combined = apply_result_path(state, cursor.input, data)
    output = apply_output_path(state, scope.with_data(combined))
    check_size(state, output, runtime)
    entry = _entry(state, cursor, SUCCEEDED, entered_at, runtime, output=output)
    return _advance(state, cursor, output, variables, entry, state.next)


def _isolated(state: State, value: Any, runtime: Runtime, what: str) -> Any:
    """A delivered value as engine data: a private copy, checked as JSON and against the payload limit."""
    try:
        text = compact(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the {what} delivered to state '{state.name}' is not JSON: {exc}") from None
    _check_text_size(state, text, runtime, what)
    return json.loads(text)


def _wake_time(state: WaitState, scope: Scope, runtime: Runtime) -> float:
    now = runtime.clock()
    if state.seconds is not None:
        return now + state.seconds
    if state.seconds_path is not None or state.seconds_expression is not None:
        spec = IntOrPath("Seconds", path=state.seconds_path, expression=state.seconds_expression)
        seconds = resolve_number(state, spec, scope, maximum=MAX_LONG)
        assert seconds is not None
        if seconds > MAX_WAIT_SECONDS:
            raise runtime_error(state, "Wait state delay is too long.")
        return now + seconds
    if state.timestamp_expression is not None:
        stamp = state.timestamp_expression.evaluate(scope)
        moment = parse_timestamp(stamp)
        if moment is None:
            raise StatesError(
                errors.QUERY_EVALUATION_ERROR,
                f"An error occurred while executing the state '{state.name}'. The Timestamp field cannot be "
                f"parsed as an ISO-8601 extended offset date-time format string: {stamp if isinstance(stamp, str) else compact(stamp)}",
            )
        return _until(state, moment.timestamp(), now)
    text: Any = state.timestamp
    if state.timestamp_path is not None:
        try:
            text = scope.read(state.timestamp_path)
        except PathNotFound:
            raise runtime_error(
                state,
                f"The TimestampPath parameter does not reference an input value: {state.timestamp_path.text}",
            ) from None
    moment = parse_timestamp(text)
    if moment is None:
        raise runtime_error(
            state,
            "The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time "
            f"format string: {state.timestamp_path.text if state.timestamp_path else ''} == {text!r}",
        )
    return _until(state, moment.timestamp(), now)


def _until(state: WaitState, until: float, now: float) -> float:
    """AWS refuses a wait ending more than MAX_WAIT_SECONDS from now: States.Runtime, no waiting."""
    if until - now > MAX_WAIT_SECONDS:
        raise runtime_error(state, "Wait state delay is too long.")
    return until


# ------------------------------------------------------------------------------ Pass, Task, Parallel, Map


def _run_result_state(
    state: ResultState,
    cursor: Cursor,
    scope: Scope,
    entered_at: float,
    attempt_start: float,
    runtime: Runtime,
    token: str | None = None,
) -> Step:
    raw_input = cursor.input
    # A callback Task resumed with its delivery: the task ran in an earlier step, only its result is new.
    callback = cursor.pending if isinstance(state, TaskState) and state.wait_for_token else None
    # A `.sync` Task between two checks of its job (smq.engine.sync): this step checks it.
    poll = poll_pending(cursor.pending) if isinstance(state, TaskState) and state.sync else None
    if callback is not None or poll is not None:
        attempt_start = (callback or poll or {}).get("started_at", attempt_start)
        effective = None
    else:
        effective = raw_input if state.jsonata else apply_input_path(state, scope)
    fanout = cursor.pending if isinstance(state, (MapState, ParallelState)) else None
    if isinstance(fanout, dict) and "started_at" in fanout:
        attempt_start = fanout["started_at"]  # branches parked, now resumed: the same attempt goes on
    nested: list[HistoryEntry] = []
    try:
        if callback is not None:
            assert isinstance(state, TaskState)
            result = _callback_result(state, callback, runtime)
        elif poll is not None:
            assert isinstance(state, TaskState)
            from smq.engine.sync_steps import check_job

            checked = check_job(state, cursor, poll, runtime, entered_at)
            if isinstance(checked, Step):
                return checked  # still running: parked on its next check
            result = checked
        elif isinstance(state, MapState):
            from smq.engine.fanout import run_map  # fan-out drives sub-machines with this interpreter

            result = run_map(state, cursor, scope.with_data(effective), entered_at, runtime, nested)
        else:
            arguments = state.arguments if state.jsonata else state.parameters
            if arguments is not None:
                effective = arguments(scope.with_data(effective))
                if not isinstance(state, TaskState):  # a Task checks the same text it hands over
                    _sized_json(state, effective, runtime, "input after Parameters")
            if isinstance(state, PassState):
                result = state.result if state.has_result else effective
            elif isinstance(state, TaskState):
                timeout = resolve_number(state, state.timeout, scope, minimum=1)
                heartbeat = resolve_number(state, state.heartbeat, scope, minimum=1)
                if state.wait_for_token:
                    # The handler hands the token over (its return value is ignored); then wait.
                    assert token is not None
                    if state.nested is not None:  # a child execution whose input carries the token
                        from smq.engine.sync_steps import start_child

                        start_child(state, cursor, effective, runtime, token)
                    else:
                        _invoke_task(state, cursor, effective, runtime, timeout, None, token)
                    waiting = {
                        "kind": "callback",
                        "token": token,
                        "until": None if timeout is None else attempt_start + timeout,
                        "heartbeat": heartbeat,
                        "started_at": attempt_start,
                    }
                    parked = cursor.moved(pending=waiting, not_before=None, entered_at=entered_at)
                    return Step([], cursor=parked)
                if state.sync:
                    from smq.engine.sync_steps import start_job

                    return start_job(
                        state, cursor, effective, runtime, timeout, heartbeat, attempt_start, entered_at
                    )
                if state.nested is not None:
                    from smq.engine.sync_steps import start_child

                    result = start_child(state, cursor, effective, runtime, None)
                else:
                    result = _invoke_task(state, cursor, effective, runtime, timeout, heartbeat)
            else:
                assert isinstance(state, ParallelState)
                from smq.engine.fanout import run_parallel

                result = run_parallel(state, cursor, effective, entered_at, runtime, nested)
        if isinstance(state, (MapState, ParallelState)):
            _sized_json(state, result, runtime, "result")  # AWS limits the result, whatever is kept of it
        if state.jsonata:
            result_scope = scope if isinstance(state, PassState) else scope.with_states(result=result)
            variables = _assigned(cursor.variables, state.assign, result_scope)
            output = _jsonata_output(state, result_scope, result, runtime)
        else:
            if state.result_selector is not None:
                result = state.result_selector(scope.with_data(result))
            result_scope = scope.with_data(result)
            variables = _assigned(cursor.variables, state.assign, result_scope)
            combined = apply_result_path(state, raw_input, result)
            output = apply_output_path(state, scope.with_data(combined))
            if not isinstance(state, PassState) or state.has_result or state.parameters is not None:
                check_size(state, output, runtime)
    except BranchesParked as paused:
        # Every branch has ended or waits: the state parks with their progress, and the history they
        # made so far is written with it.
        paused_at = cursor.moved(
            pending={**paused.pending, "started_at": attempt_start},
            not_before=paused.not_before,
            entered_at=entered_at,
            kept_results=None,
        )
        return Step(nested, cursor=paused_at)
    except StatesError as err:
        return _handle_error(state, cursor, scope, entered_at, attempt_start, runtime, err, nested)
    entry = _entry(state, cursor, SUCCEEDED, attempt_start, runtime, output=output)
    step = _advance(state, cursor, output, variables, entry, state.next)
    if nested:
        step.entries[:0] = nested
    return step


def _handle_error(
    state: ResultState,
    cursor: Cursor,
    scope: Scope,
    entered_at: float,
    attempt_start: float,
    runtime: Runtime,
    err: StatesError,
    nested: list[HistoryEntry],
) -> Step:
    """Retry (first matching retrier only), else Catch (first matching catcher), else fail."""
    error, cause = err.error, err.cause
    for index, retrier in enumerate(state.retriers):
        if not error_matches(retrier.error_equals, error):
            continue
        counts = list(cursor.retry_counts) or [0] * len(state.retriers)
        if counts[index] < retrier.max_attempts:
            delay = retrier.interval_seconds * retrier.backoff_rate ** counts[index]
            if retrier.max_delay_seconds is not None:
                delay = min(delay, retrier.max_delay_seconds)
            if retrier.jitter == "FULL":
                delay = random.uniform(0, delay)
            counts[index] += 1
            entry = _entry(state, cursor, RETRIED, attempt_start, runtime, error=error, cause=cause)
            next_cursor = cursor.moved(
                retry_counts=tuple(counts),
                attempt=cursor.attempt + 1,
                pending=None,
                not_before=runtime.clock() + delay,
                transitions=cursor.transitions + 1,
                entered_at=entered_at,
                kept_results=None,  # a retry runs the whole state again, as in AWS
            )
            return Step([*nested, entry], cursor=next_cursor)
        break  # only the first matching retrier applies, even when it is exhausted
    for catcher in state.catchers:
        if not error_matches(catcher.error_equals, error):
            continue
        error_output: dict[str, Any] = {"Error": error}
        if cause is not None:
            error_output["Cause"] = cause
        if state.jsonata:
            error_scope = scope.with_states(error_output=error_output)
            variables = _assigned(cursor.variables, catcher.assign, error_scope)
            output = catcher.output(error_scope) if catcher.output is not None else error_output
            entry = _entry(
                state, cursor, CAUGHT, attempt_start, runtime, output=output, error=error, cause=cause
            )
            step = _advance(state, cursor, output, variables, entry, catcher.next)
            step.entries[:0] = nested
            return step
        variables = _assigned(cursor.variables, catcher.assign, scope.with_data(error_output))
        if catcher.result_path is None:
            output = cursor.input
        elif not catcher.result_path.keys:
            output = error_output
        else:
            try:
                output = set_at(cursor.input, catcher.result_path.keys, error_output)
            except PathNotFound:
                fail = StatesError(
                    errors.RESULT_PATH_MATCH_FAILURE,
                    f"Unable to apply the catcher's ResultPath '{catcher.result_path.text}' in state '{state.name}'",
                )
                entry = _entry(
                    state, cursor, FAILED, attempt_start, runtime, error=fail.error, cause=fail.cause
                )
                return Step([*nested, entry], status=FAILED, error=fail.error, cause=fail.cause)
        entry = _entry(state, cursor, CAUGHT, attempt_start, runtime, output=output, error=error, cause=cause)
        step = _advance(state, cursor, output, variables, entry, catcher.next)
        step.entries[:0] = nested
        return step
    entry = _entry(state, cursor, FAILED, attempt_start, runtime, error=error, cause=cause)
    failed_at = cursor.moved(kept_results=err.kept) if isinstance(err, BranchesFailed) else None
    return Step([*nested, entry], status=FAILED, error=error, cause=cause, failed_at=failed_at)


def _callback_result(state: TaskState, pending: dict[str, Any], runtime: Runtime) -> Any:
    """The result a callback Task's delivery carries, or the ASL error it stands for.

    `{"kind": "success", "output": X}` gives X; `failure` raises its error and cause; `timeout` raises
    States.Timeout and `heartbeat_timeout` States.HeartbeatTimeout. All go through Retry and Catch.
    """
    delivery = pending.get("delivery")
    check_delivery("callback", delivery)
    assert isinstance(delivery, dict)
    kind = delivery["kind"]
    if kind == "success":
        return _isolated(state, delivery["output"], runtime, "result")
    if kind == "failure":
        raise StatesError(delivery.get("error"), delivery.get("cause"))
    if kind == "timeout":
        raise StatesError(
            errors.TIMEOUT,
            f"Task '{state.name}' timed out: no callback for its task token before its timeout",
        )
    raise StatesError(
        errors.HEARTBEAT_TIMEOUT,
        f"Task '{state.name}' received no heartbeat for its task token within {pending.get('heartbeat')} seconds",
    )


def _invoke_task(
    state: TaskState,
    cursor: Cursor,
    effective: Any,
    runtime: Runtime,
    timeout: float | None,
    heartbeat: float | None,
    token: str | None = None,
) -> Any:
    is_lambda_invoke = state.base_resource == LAMBDA_INVOKE
    function_name = (
        effective.get("FunctionName") if is_lambda_invoke and isinstance(effective, dict) else None
    )
    try:
        resolved = runtime.handlers.resolve(state.resource, function_name)
    except Exception as exc:
        raise runtime_error(state, str(exc)) from None
    # A handler registered for a function takes Payload and its result is wrapped as Invoke's; one
    # that serves the integration (yours under its name, or the built-in) takes and gives it whole.
    payload_only = is_lambda_invoke and not resolved.whole_request
    payload = (
        (effective.get("Payload", {}) if isinstance(effective, dict) else {}) if payload_only else effective
    )
    remaining = None if runtime.deadline is None else max(0.0, runtime.deadline - runtime.clock())
    ctx = task_context(state, cursor, token)
    # The handler may mutate its input and keep its result: both cross as JSON text, which also
    # enforces the payload limit on the task's input (after Parameters) and on its raw result.
    isolated = json.loads(_sized_json(state, payload, runtime, "input after Parameters"))
    try:
        result = call_handler(
            resolved,
            isolated,
            ctx,
            timeout=timeout,
            heartbeat=heartbeat,
            execution_remaining=remaining,
            cancelled=runtime.cancelled,
            pass_through=runtime.pass_through,
        )
    except StatesError as error:
        if is_lambda_invoke or state.resource.startswith("arn:aws:lambda:"):
            raise lambda_error(error) from error.__cause__
        raise
    if token is not None:
        return None  # a callback task's result arrives with its token, not from the handler
    try:
        text = compact(result)
    except (TypeError, ValueError) as exc:
        raise StatesError(
            errors.TASK_FAILED,
            f"the handler for '{state.resource}' in state '{state.name}' returned a value that is not JSON: {exc}",
        ) from None
    _check_text_size(state, text, runtime, "result")
    result = json.loads(text)
    if payload_only:
        return {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}
    return result
