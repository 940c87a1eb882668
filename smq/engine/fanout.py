"""Parallel branches and Map iterations: sub-executions run concurrently, results kept in order.

Each branch or item is a sub-machine driven by the same interpreter, in a scope that starts with a
copy of the outer workflow variables (inner assignments never leak out, as in AWS). Sub-machines
made only of Pass/Choice/Succeed/Fail/nested fan-outs cannot block, so they run inline; the others
run on a bounded thread pool honouring MaxConcurrency.

On a worker (`park_after`), a branch paused for longer than that parks instead of sleeping, and a
branch at a Message state or a callback task parks until its delivery. Once every branch has ended
or parked, the state parks too: its cursor's `pending` is
`{"kind": "fanout", "count": N, "started_at": EPOCH, "jobs": {"<index>": JOB}}`, where JOB is
`{"status": "SUCCEEDED", "output": X}`, `{"status": "FAILED", "error": E, "cause": C}` (a tolerated
Map failure) or `{"status": "WAITING", "cursor": CURSOR}` (without the shared execution info), and
`not_before` is the earliest timer (none if every paused branch waits for a delivery: the cursor is
then parked). A delivery is written into its branch's cursor (`smq.engine.cursor.deliver_at`). Branches never started (MaxConcurrency, which counts parked ones)
are absent and start on resume. Resumed, ended branches keep their results and parked ones go on from
their cursors; a Retry of the state drops all of it and starts afresh.

With the runtime's `branch_rows` (a persisted execution's top-level state), a state whose branches
have all started and whose paused ones all wait for a delivery parks in rows mode instead
(`smq.engine.branch_rows`): the jobs go to rows of their own, `pending` keeps counts, and a resumed
run drives only the branches whose answer has come (`_run_from_rows`).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, overload

from smq.engine import branch_rows, errors, interpreter
from smq.engine.cursor import FANOUT, Cursor, HistoryEntry, fanout_pending
from smq.engine.driver import ABORTED, SUCCEEDED, TIMED_OUT, WAITING, Outcome, drive
from smq.engine.errors import BranchesFailed, BranchesParked, StatesError
from smq.engine.jsonata import unexpected_type
from smq.engine.jsontext import compact
from smq.engine.model import Machine, MapState, ParallelState
from smq.engine.paths import PathNotFound, Scope
from smq.engine.runtime import ExecutionAborted, ExecutionTimedOut, Runtime
from smq.engine.sync import awaits_check


def branch_progress(pending: Any) -> dict[str, int] | None:
    """How the branches of a parked Parallel or Map stand (from its cursor's `pending`), for operators:
    how many there are, and how many succeeded, failed (tolerated), wait, or have not started."""
    fanout = fanout_pending(pending)
    if fanout is None:
        return None
    if fanout.get(branch_rows.ROWS):  # rows mode: the summary counts them
        count, waiting = int(fanout.get("count") or 0), int(fanout.get("waiting") or 0)
        succeeded = int(fanout.get("succeeded") or 0)
        return {
            "count": count,
            "succeeded": succeeded,
            "failed": count - waiting - succeeded,
            "waiting": waiting,
            "not_started": 0,
        }
    statuses = [job.get("status") for job in (fanout.get("jobs") or {}).values()]
    count = int(fanout.get("count") or 0)
    return {
        "count": count,
        "succeeded": statuses.count(SUCCEEDED),
        "failed": sum(1 for status in statuses if status not in (SUCCEEDED, WAITING)),
        "waiting": statuses.count(WAITING),
        "not_started": count - len(statuses),
    }


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


def kept_for_redrive(cursor: Cursor, rows: branch_rows.BranchRows | None = None) -> dict[str, Any] | None:
    """What a redriven Parallel or Map keeps (`Cursor.kept_results`): the branches that succeeded
    before it failed, or before the execution was stopped or timed out while its branches were parked
    (in rows mode, read from `rows`)."""
    fanout = fanout_pending(cursor.pending)
    if fanout is None:
        return cursor.kept_results
    if fanout.get(branch_rows.ROWS):
        if cursor.kept_results is not None or rows is None:
            return cursor.kept_results  # it failed: what it kept then (or nothing can be read)
        jobs = rows.jobs()
    else:
        jobs = fanout.get("jobs") or {}
    outputs = {index: job.get("output") for index, job in jobs.items() if job.get("status") == SUCCEEDED}
    return {"count": fanout.get("count"), "outputs": outputs}


def _earlier_jobs(parent: Cursor, count: int) -> dict[str, dict[str, Any]]:
    """Where each job stood before this run of the state, by index: from the state's own park
    (`{"status": SUCCEEDED|FAILED|WAITING, ...}`), else the outputs a redrive keeps."""
    fanout = fanout_pending(parent.pending)
    if fanout is not None and fanout.get("count") == count:
        jobs = fanout.get("jobs")
        return jobs if isinstance(jobs, dict) else {}
    return {
        index: {"status": SUCCEEDED, "output": out} for index, out in _kept_outputs(parent, count).items()
    }


def _is_parked(outcome: Outcome) -> bool:
    """A job paused, resumable from its cursor: until a later moment (a long Wait or retry back-off),
    or until a delivery (a Message state, a callback task) reaches it."""
    cursor = outcome.cursor
    return (
        outcome.status == WAITING and cursor is not None and (cursor.not_before is not None or cursor.parked)
    )


def _stored(cursor: Cursor) -> dict[str, Any]:
    """A parked job's cursor without the execution info, which every job shares with the parent."""
    data = cursor.to_dict()
    del data["execution"]
    return data


def _restored(parent: Cursor, data: dict[str, Any]) -> Cursor:
    return Cursor.from_dict({**data, "execution": parent.execution.to_dict()})


def _job(outcome: Outcome) -> dict[str, Any]:
    """A job's progress as the state parks: its cursor while it waits, else its result."""
    if _is_parked(outcome):
        assert outcome.cursor is not None
        return {"status": WAITING, "cursor": _stored(outcome.cursor)}
    if outcome.status == SUCCEEDED:
        return {"status": SUCCEEDED, "output": outcome.output}
    # a failure a Map tolerates: it still counts when the state goes on
    return {"status": outcome.status, "error": outcome.error, "cause": outcome.cause}


def _waits_for_delivery(outcome: Outcome) -> bool:
    """A parked job waiting for a message or a token itself (`branch_rows.waits_for_delivery`)."""
    cursor = outcome.cursor
    return cursor is not None and branch_rows.waits_for_delivery(cursor.pending, cursor.not_before)


def _park_if_waiting(
    outcomes: list[Outcome | None], runtime: Runtime, changed: set[int] | None = None
) -> None:
    """When jobs are parked (and none failed the state), park the state with every job's progress:
    results of those that ended, cursors of those that wait; those never started start on resume.

    In rows mode (`smq.engine.branch_rows`: a top-level state, every job started, every parked one
    waiting for a delivery) the progress goes to the execution's branch rows: every job's (`changed`
    None), or only `changed` ones' (the others' rows are as they were)."""
    parked = [outcome for outcome in outcomes if outcome is not None and _is_parked(outcome)]
    if not parked:
        return
    if runtime.cancelled():
        raise ExecutionAborted("the execution was stopped")
    if (
        runtime.branch_rows is not None
        and all(outcome is not None for outcome in outcomes)
        and all(_waits_for_delivery(outcome) for outcome in parked)
    ):
        indices = range(len(outcomes)) if changed is None else sorted(changed)
        changes = {str(index): _job(outcome) for index in indices if (outcome := outcomes[index]) is not None}
        succeeded = sum(1 for outcome in outcomes if outcome is not None and outcome.status == SUCCEEDED)
        raise BranchesParked(
            branch_rows.summary(len(outcomes), len(parked), succeeded, changes, fresh=changed is None), None
        )
    jobs = {str(index): _job(outcome) for index, outcome in enumerate(outcomes) if outcome is not None}
    timers = [outcome.cursor.not_before for outcome in parked if outcome.cursor and outcome.cursor.not_before]
    raise BranchesParked({"kind": FANOUT, "count": len(outcomes), "jobs": jobs}, min(timers, default=None))


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
    if outcome.status == WAITING:  # paused with nothing to resume it by: cannot happen
        raise StatesError(
            errors.RUNTIME, "a Parallel branch or Map iteration stopped with nothing to wait for"
        )


def _known_outcome(before: dict[str, Any] | None, parent: Cursor, runtime: Runtime) -> Outcome | None:
    """A job's outcome when it needs no driving: the result it ended with before, or, parked, its
    cursor when nothing lets it go on now (the driver would park it again at once)."""
    if before is None:
        return None
    if before.get("status") != WAITING:
        return Outcome(before["status"], before.get("output"), before.get("error"), before.get("cause"))
    cursor = _restored(parent, before["cursor"])
    if cursor.parked:
        return Outcome(WAITING, cursor=cursor)
    if awaits_check(cursor.pending):
        return None  # a `.sync` job's check: resumed, it checks at once (smq.engine.sync)
    if cursor.not_before is not None and runtime.park_after is not None:
        wake = cursor.not_before if runtime.deadline is None else min(cursor.not_before, runtime.deadline)
        if wake - runtime.clock() > runtime.park_after:
            return Outcome(WAITING, cursor=cursor)
    return None


class _Slots:
    """MaxConcurrency (0: no limit) counts parked jobs as in flight: while one waits, no other takes
    its place, as in AWS where the waiting iteration is still running. A job without a slot waits for
    a running one to end (or for a job parked earlier to be resumed); it gives up, to start after the
    state resumes, only when parked jobs hold every slot and nothing else can free one."""

    def __init__(self, limit: int, restored: int) -> None:
        self.limit = limit
        self.running = 0
        self.parked = restored  # parked before this run, still holding their slots...
        self.unresumed = restored  # ...of which not yet picked up again in this run
        self._changed = threading.Condition()

    def take(self) -> bool:
        with self._changed:
            while self.limit and self.running + self.parked >= self.limit:
                if not self.running and not self.unresumed:
                    return False  # the state will park: nothing can free a slot in this run
                self._changed.wait()
            self.running += 1
            return True

    def resume(self) -> None:
        """A job parked earlier goes on, in the slot it holds."""
        with self._changed:
            self.unresumed -= 1
            self.parked -= 1
            self.running += 1

    def skip(self) -> None:
        """A job parked earlier is not picked up (the state is being cancelled)."""
        with self._changed:
            self.unresumed -= 1
            self._changed.notify_all()

    def done(self, parked: bool) -> None:
        with self._changed:
            self.running -= 1
            if parked:
                self.parked += 1
            self._changed.notify_all()


def _run_all(
    jobs: Sequence[tuple[Machine, Any, str]],
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
    cannot interrupt it); items not yet started never start. With `runtime.park_after`, a job paused
    for longer parks (its outcome is WAITING with its cursor) and keeps its MaxConcurrency slot; the
    caller then parks the state (`_park_if_waiting`). Jobs that ended before (the state parked, or
    failed and was redriven) are not run again; parked ones go on from their cursors.
    """
    outcomes: list[Outcome | None] = [None] * len(jobs)
    group = runtime.child()
    earlier = _earlier_jobs(parent, len(jobs))
    parked_before = {int(index) for index, job in earlier.items() if job.get("status") == WAITING}
    slots = _Slots(concurrency, len(parked_before))
    # Jobs parked before go first: they hold their slots, and a new job may wait for them to end.
    order = sorted(range(len(jobs)), key=lambda index: (index not in parked_before, index))

    def run_one(index: int) -> Outcome | None:
        """Drive a job that is new or parked with somewhere to go (`_known_outcome` settled the rest)."""
        before = earlier.get(str(index))
        if group.cancelled():
            if before is not None:
                slots.skip()
            return None
        machine, item_input, label = jobs[index]
        if before is not None:
            slots.resume()
            start = _restored(parent, before["cursor"])
        elif slots.take():
            start = _sub_cursor(parent, machine, item_input, isolated)
        else:
            return None  # parked jobs hold every slot: this one starts after the state resumes
        parked = False
        try:
            outcome = drive(machine, start, group, scope=label)
            parked = _is_parked(outcome)
        finally:
            slots.done(parked)
        return outcome

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
        if _is_parked(outcome):
            return False
        if outcome.status == ABORTED and not runtime.cancelled():
            return False  # a sibling cancelled because another one failed: not a failure of its own
        if outcome.status in (TIMED_OUT, ABORTED, WAITING):
            group.abort.set()
            _raise_if_interrupted(outcome)
        if outcome.status != SUCCEEDED and on_failure(index, outcome):
            group.abort.set()
            return True
        return False

    # Jobs whose outcome needs no driving are settled here: those that ended before, and parked ones
    # with nothing to go on (no delivery yet, a timer not due): only the others take a thread, so a Map
    # of a thousand waiting iterations wakes for one answer without a thousand threads.
    runnable: list[int] = []
    for index in order:
        known = _known_outcome(earlier.get(str(index)), parent, group)
        if known is None:
            runnable.append(index)
            continue
        if known.status == WAITING:
            slots.skip()  # still parked: it keeps its slot
        if settle(index, known):
            return outcomes

    if inline or len(runnable) <= 1 or concurrency == 1:
        for index in runnable:
            finished = run_one(index)
            if finished is None:
                if group.cancelled():
                    break
                continue  # no slot for it now (a parked job holds it): it starts on resume
            nested.extend(finished.history)
            if settle(index, finished):
                break
        return outcomes

    workers = min(len(runnable), concurrency or runtime.max_workers, runtime.max_workers)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smq-fanout") as pool:
            futures: dict[Future[Outcome | None], int] = {
                # Each in a copy of this thread's context variables: log lines name the execution.
                pool.submit(contextvars.copy_context().run, run_one_threaded, i): i
                for i in runnable
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


def _drive_jobs(
    jobs: Sequence[tuple[Machine, Any, str]],
    parent: Cursor,
    runtime: Runtime,
    concurrency: int,
    inline: bool,
    nested: list[HistoryEntry],
    on_failure: Callable[[int, Outcome], bool],
    isolated: bool = False,
) -> tuple[list[Outcome | None], set[int] | None]:
    """`_run_all`, or, when the state parked in rows mode, `_run_from_rows`. Also returns which jobs
    this run changed when they are not all (rows mode), for `_park_if_waiting`."""
    summary = branch_rows.rows_summary(parent.pending)
    if summary is None:
        return _run_all(jobs, parent, runtime, concurrency, inline, nested, on_failure, isolated), None
    if runtime.branch_rows is None:
        raise StatesError(
            errors.RUNTIME, "the branches' progress is kept in branch rows: resume it through its repository"
        )
    if summary.get("count") != len(jobs):
        raise StatesError(
            errors.RUNTIME, f"the state parked with {summary.get('count')} branches, not {len(jobs)}"
        )
    return _run_from_rows(jobs, parent, runtime, summary, concurrency, inline, nested, on_failure, isolated)


def _run_from_rows(
    jobs: Sequence[tuple[Machine, Any, str]],
    parent: Cursor,
    runtime: Runtime,
    summary: dict[str, Any],
    concurrency: int,
    inline: bool,
    nested: list[HistoryEntry],
    on_failure: Callable[[int, Outcome], bool],
    isolated: bool,
) -> tuple[list[Outcome | None], set[int]]:
    """Go on from rows mode: drive only the jobs whose answer has come. When they all end well or wait
    again for a delivery while others still wait, park at once with only their rows (BranchesParked):
    nothing here is as large as the fan-out. Otherwise (the last one ended, one failed, one waits on a
    timer) every row is read and the outcomes of all jobs are returned, for the state to end or park
    as usual, with the jobs this run drove (the others' rows are unchanged)."""
    assert runtime.branch_rows is not None
    ready = runtime.branch_rows.ready()
    indices = sorted(int(index) for index in ready if int(index) < len(jobs))
    resumed = parent.moved(
        pending={
            "kind": FANOUT,
            "count": len(indices),
            "jobs": {str(k): ready[str(index)] for k, index in enumerate(indices)},
        }
    )
    driven = _run_all(
        [jobs[index] for index in indices],
        resumed,
        runtime,
        concurrency,
        inline,
        nested,
        lambda k, outcome: on_failure(indices[k], outcome),
        isolated,
    )
    runtime.branch_rows.applied([index for index, outcome in zip(indices, driven, strict=True) if outcome])
    waiting = int(summary.get("waiting") or 0) - len(indices)
    succeeded = int(summary.get("succeeded") or 0)
    simple = True
    for outcome in driven:
        if outcome is None or not (outcome.status == SUCCEEDED or _waits_for_delivery(outcome)):
            simple = False
        elif outcome.status == SUCCEEDED:
            succeeded += 1
        else:
            waiting += 1
    if simple and waiting > 0:
        if runtime.cancelled():
            raise ExecutionAborted("the execution was stopped")
        changes = {
            str(index): _job(outcome) for index, outcome in zip(indices, driven, strict=True) if outcome
        }
        raise BranchesParked(branch_rows.summary(len(jobs), waiting, succeeded, changes, fresh=False), None)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    for key, job in runtime.branch_rows.jobs().items():
        if int(key) < len(jobs):
            outcomes[int(key)] = _known_outcome(job, parent, runtime)
    changed: set[int] = set()
    for position, outcome in zip(indices, driven, strict=True):
        if outcome is not None:  # a job cancelled before it ran keeps its row (and its answer)
            outcomes[position] = outcome
            changed.add(position)
    for position, known in enumerate(outcomes):
        if position not in changed and known is not None and known.status not in (SUCCEEDED, WAITING):
            on_failure(position, known)  # a failure tolerated before still counts
    return outcomes, changed


class _Jobs(Sequence[tuple[Machine, Any, str]]):
    """A Map's jobs made when asked for, by index: a Map resumed in rows mode looks at a few."""

    def __init__(self, count: int, make: Callable[[int], tuple[Machine, Any, str]]) -> None:
        self.size = count
        self.make = make

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> tuple[Machine, Any, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[Machine, Any, str]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.make(i) for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self.make(index % self.size)


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
    outcomes, changed = _drive_jobs(jobs, cursor, runtime, 0, inline, nested, on_failure)
    if failure:
        first = failure[0]
        raise _failed(first.error, first.cause, outcomes)
    _park_if_waiting(outcomes, runtime, changed)
    return [outcome.output for outcome in outcomes if outcome is not None]


def _jsonata_items(state: MapState, scope: Scope) -> list[Any]:
    """A JSONata Map's items: its Items (an expression, or an array with expressions inside), else
    its input; anything but an array is States.QueryEvaluationError."""
    if state.items_expression is not None:
        items = state.items_expression.evaluate(scope)
        if not isinstance(items, list):
            raise unexpected_type(state.items_expression, "array", items)
        return items
    items = state.items(scope) if state.items is not None else scope.data
    if not isinstance(items, list):
        raise StatesError(
            errors.QUERY_EVALUATION_ERROR,
            f"An error occurred while executing the state '{state.name}'. "
            f"Map state input must be an array but was: {compact(items)}",
        )
    return items


def run_map(
    state: MapState,
    cursor: Cursor,
    scope: Scope,
    entered_at: float,
    runtime: Runtime,
    nested: list[HistoryEntry],
) -> list[Any]:
    effective = scope.data
    if state.jsonata:
        items = _jsonata_items(state, scope)
    elif state.items_path is None:
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
    tolerated_count = interpreter.resolve_number(
        state, state.tolerated_failure_count, scope, allow_numeric_string=True
    )
    tolerated_pct = interpreter.resolve_number(
        state,
        state.tolerated_failure_percentage,
        scope,
        integer=False,
        maximum=100,
        allow_numeric_string=True,
    )
    batch_size = interpreter.resolve_number(state, state.max_items_per_batch, scope, minimum=1)

    def item_input(index: int) -> Any:
        """The input of iteration `index`: its batch, its item through ItemSelector, or its item."""
        if batch_size:
            size = int(batch_size)
            extra = state.batch_input(scope) if state.batch_input is not None else {}
            return {**extra, "Items": items[index * size : (index + 1) * size]}
        item = items[index]
        if state.item_selector is None:
            return item
        item_context = {"Map": {"Item": {"Index": index, "Value": item}}}
        item_scope = Scope(
            effective, cursor.variables, interpreter.context_factory(cursor, state, entered_at, item_context)
        )
        return state.item_selector(item_scope)

    count = -(-len(items) // int(batch_size)) if batch_size else len(items)
    assert state.processor is not None
    processor = state.processor
    jobs: Sequence[tuple[Machine, Any, str]]
    if branch_rows.rows_summary(cursor.pending, count) is not None:
        # Resumed in rows mode: every iteration started before; only those answered are looked at.
        jobs = _Jobs(count, lambda i: (processor, item_input(i), f"{state.name}[{i}]"))
    else:  # every input first (an ItemSelector that fails, fails the state before any iteration runs)
        jobs = [(processor, item_input(i), f"{state.name}[{i}]") for i in range(count)]
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
    outcomes, changed = _drive_jobs(
        jobs, cursor, runtime, int(concurrency), processor.pure, nested, on_failure, isolated
    )
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
    _park_if_waiting(outcomes, runtime, changed)
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
