"""Parallel branches and Map iterations: sub-executions run concurrently, results kept in order.

Each branch or item is a sub-machine driven by the same interpreter, in a scope that starts with a
copy of the outer workflow variables (inner assignments never leak out, as in AWS). Sub-machines
made only of Pass/Choice/Succeed/Fail/nested fan-outs cannot block, so they run inline; the others
run on a bounded thread pool honouring MaxConcurrency.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from smq.engine import errors, interpreter
from smq.engine.cursor import Cursor, HistoryEntry
from smq.engine.driver import ABORTED, SUCCEEDED, TIMED_OUT, WAITING, Outcome, drive
from smq.engine.errors import BranchesFailed, StatesError
from smq.engine.model import Machine, MapState, ParallelState
from smq.engine.paths import PathNotFound, Scope
from smq.engine.runtime import ExecutionAborted, ExecutionTimedOut, Runtime


def _sub_cursor(parent: Cursor, machine: Machine, item_input: Any, isolated: bool) -> Cursor:
    """A child scope: reads the outer variables (a copy), except a DISTRIBUTED Map's, which sees none."""
    return Cursor(
        execution=parent.execution,
        state=machine.start_at,
        input=item_input,
        variables={} if isolated else dict(parent.variables),
    )


def _kept_outputs(parent: Cursor, count: int) -> dict[str, Any]:
    """The outputs, by index, of the jobs that succeeded before this state failed and was redriven
    (none if the state now has another number of jobs: then every job runs)."""
    kept = parent.kept_results
    if not kept or kept.get("count") != count:
        return {}
    outputs = kept.get("outputs")
    return outputs if isinstance(outputs, dict) else {}


def _failed(error: str | None, cause: str | None, outcomes: list[Outcome | None]) -> BranchesFailed:
    """The state's failure, remembering the jobs that succeeded, for a redrive to keep."""
    outputs = {
        str(index): outcome.output
        for index, outcome in enumerate(outcomes)
        if outcome is not None and outcome.status == SUCCEEDED
    }
    return BranchesFailed(error, cause, {"count": len(outcomes), "outputs": outputs})


def _raise_if_interrupted(outcome: Outcome) -> None:
    if outcome.status == TIMED_OUT:
        raise ExecutionTimedOut(outcome.cause or "timed out")
    if outcome.status == ABORTED:
        raise ExecutionAborted(outcome.cause or "aborted")
    if outcome.status == WAITING:  # the compiler keeps Message and callback states out of sub-machines
        raise StatesError(errors.RUNTIME, "a Parallel branch or Map iteration cannot wait for a delivery")


def _run_all(
    jobs: list[tuple[Machine, Any, str]],
    parent: Cursor,
    runtime: Runtime,
    concurrency: int,
    inline: bool,
    nested: list[HistoryEntry],
    on_failure: Callable[[int, Outcome], bool],
    isolated: bool = False,
) -> list[Outcome | None]:
    """Drive every job; `on_failure` returns True when the state fails, which cancels the others.

    Cancelled siblings stop at their next state boundary (a handler already running finishes: Python
    cannot interrupt it); items not yet started never start. Jobs that succeeded before a redrive
    (`parent.kept_results`) are not run again: their recorded output stands.
    """
    outcomes: list[Outcome | None] = [None] * len(jobs)
    group = runtime.child()
    kept = _kept_outputs(parent, len(jobs))

    def run_one(index: int) -> Outcome | None:
        if group.cancelled():
            return None
        if str(index) in kept:
            return Outcome(SUCCEEDED, output=kept[str(index)])
        machine, item_input, label = jobs[index]
        return drive(machine, _sub_cursor(parent, machine, item_input, isolated), group, scope=label)

    virtual = runtime.virtual
    forked_at = runtime.clock()
    ends: list[float] = []

    def run_one_threaded(index: int) -> Outcome | None:
        if virtual is None:
            return run_one(index)
        virtual.start_thread_at(forked_at)  # virtual time: each child has its own timeline
        try:
            return run_one(index)
        finally:
            ends.append(virtual.end_thread())

    def settle(index: int, outcome: Outcome) -> bool:
        """Record one outcome; True when everything else must stop."""
        outcomes[index] = outcome
        if outcome.status == ABORTED and not runtime.cancelled():
            return False  # a sibling cancelled because another one failed: not a failure of its own
        if outcome.status in (TIMED_OUT, ABORTED, WAITING):
            group.abort.set()
            _raise_if_interrupted(outcome)
        if outcome.status != SUCCEEDED and on_failure(index, outcome):
            group.abort.set()
            return True
        return False

    if inline or len(jobs) <= 1 or concurrency == 1:
        for index in range(len(jobs)):
            finished = run_one(index)
            if finished is None:
                break
            nested.extend(finished.history)
            if settle(index, finished):
                break
        return outcomes

    workers = min(len(jobs), concurrency or runtime.max_workers, runtime.max_workers)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smq-fanout") as pool:
            futures: dict[Future[Outcome | None], int] = {
                pool.submit(run_one_threaded, i): i for i in range(len(jobs))
            }
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    exc = future.exception()
                    if exc is not None:
                        group.abort.set()
                        raise exc
                    result = future.result()
                    if result is not None:
                        settle(futures[future], result)
    finally:
        if virtual is not None and ends:
            virtual.sleep_until(max(ends))  # the parent resumes when its slowest child finished
        for maybe in outcomes:
            if maybe is not None:
                nested.extend(maybe.history)
    return outcomes


def run_parallel(
    state: ParallelState,
    cursor: Cursor,
    effective: Any,
    entered_at: float,
    runtime: Runtime,
    nested: list[HistoryEntry],
) -> list[Any]:
    jobs = [(branch, effective, f"{state.name}[{i}]") for i, branch in enumerate(state.branches)]
    failure: list[Outcome] = []

    def on_failure(index: int, outcome: Outcome) -> bool:
        failure.append(outcome)
        return True

    inline = all(branch.pure for branch in state.branches)
    outcomes = _run_all(jobs, cursor, runtime, 0, inline, nested, on_failure)
    if failure:
        first = failure[0]
        raise _failed(first.error, first.cause, outcomes)
    return [outcome.output for outcome in outcomes if outcome is not None]


def run_map(
    state: MapState,
    cursor: Cursor,
    scope: Scope,
    entered_at: float,
    runtime: Runtime,
    nested: list[HistoryEntry],
) -> list[Any]:
    effective = scope.data
    if state.items_path is None:
        items = effective
    else:
        try:
            items = scope.read(state.items_path)
        except PathNotFound:
            raise interpreter.runtime_error(
                state, f"The ItemsPath '{state.items_path.text}' could not be found in the input"
            ) from None
    if not isinstance(items, list):
        raise interpreter.runtime_error(
            state, f"The ItemsPath field must select a JSON array, got {interpreter._preview(items)}"
        )
    concurrency = (
        interpreter.resolve_number(state, state.max_concurrency, scope, allow_numeric_string=True) or 0
    )
    tolerated_count = interpreter.resolve_number(state, state.tolerated_failure_count, scope)
    tolerated_pct = interpreter.resolve_number(
        state, state.tolerated_failure_percentage, scope, integer=False, maximum=100
    )
    batch_size = interpreter.resolve_number(state, state.max_items_per_batch, scope, minimum=1)

    inputs: list[Any] = []
    if batch_size:
        extra = state.batch_input(scope) if state.batch_input is not None else {}
        size = int(batch_size)
        for start in range(0, len(items), size):
            inputs.append({**extra, "Items": items[start : start + size]})
    else:
        for index, item in enumerate(items):
            if state.item_selector is None:
                inputs.append(item)
                continue
            item_context = {"Map": {"Item": {"Index": index, "Value": item}}}
            item_scope = Scope(
                effective,
                cursor.variables,
                interpreter.context_factory(cursor, state, entered_at, item_context),
            )
            inputs.append(state.item_selector(item_scope))

    assert state.processor is not None
    processor = state.processor
    jobs = [(processor, item_input, f"{state.name}[{i}]") for i, item_input in enumerate(inputs)]
    total = len(jobs)
    tolerant = tolerated_count is not None or tolerated_pct is not None
    failures: list[Outcome] = []

    def exceeded(count: int) -> bool:
        if tolerated_count is not None and count > tolerated_count:
            return True
        if tolerated_pct is not None and total and count * 100.0 / total > tolerated_pct:
            return True
        return False

    def on_failure(index: int, outcome: Outcome) -> bool:
        failures.append(outcome)
        return not tolerant or exceeded(len(failures))

    isolated = state.mode == "DISTRIBUTED"
    outcomes = _run_all(jobs, cursor, runtime, int(concurrency), processor.pure, nested, on_failure, isolated)
    if failures:
        if not tolerant:
            first = failures[0]
            raise _failed(first.error, first.cause, outcomes)
        if exceeded(len(failures)):
            raise _failed(
                errors.EXCEED_TOLERATED_FAILURE_THRESHOLD,
                f"The Map state '{state.name}' had {len(failures)} failed item(s) of {total}, above its tolerated threshold",
                outcomes,
            )
    results: list[Any] = []
    for outcome in outcomes:
        assert outcome is not None
        if outcome.status == SUCCEEDED:
            results.append(outcome.output)
        else:
            failed: dict[str, Any] = {"Error": outcome.error}
            if outcome.cause is not None:
                failed["Cause"] = outcome.cause
            results.append(failed)
    return results
