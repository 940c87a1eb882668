"""Start and resume persisted executions in this process.

Every state transition is written through `Repository.checkpoint` (history rows and cursor in one
transaction) before any side effect that follows it, so an execution killed between two states resumes
from its last checkpoint and never repeats a completed Task (see `smq.execution.checkpoints` for which
steps share a transaction). Starting
is idempotent by (state machine, name): a finished execution is returned as it is, a running one is
resumed from its checkpoint, never started twice.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from smq.engine.branch_rows import rows_summary
from smq.engine.cursor import AwsIdentity, Cursor, Step, fanout_pending
from smq.engine.errors import SmqError
from smq.engine.handlers import HandlerRegistry, default_registry
from smq.engine.jsontext import compact
from smq.engine.machine import StateMachine
from smq.engine.runtime import DEFAULT_PAYLOAD_LIMIT
from smq.execution.checkpoints import (
    BOUNDARIES,
    CHECKPOINT_MODES,
    CheckpointWriter,
    Superseded,
    Unstorable,
    starts_side_effect_free,
)
from smq.execution.leases import (
    ExecutionHeld,
    claim,
    lease_keeper,
    let_go_if_idle,
    process_owner,
    running_here,
)
from smq.execution.observer import NOOP, Observer
from smq.execution.transformers import apply_transformer
from smq.logs import ended_fields, execution_run, log_end
from smq.repository.branches import ExecutionBranches, restore_inputs
from smq.repository.models import PAUSED, SUCCEEDED, WAITING
from smq.repository.repository import (
    CheckpointConflict,
    ExecutionRecord,
    Repository,
    StaleDefinition,
    new_execution_record,
)
from smq.repository.waits import DELIVERED, PARKED, WaitStore
from smq.settings import Settings

log = logging.getLogger("smq.execution")

# What a library caller gets when it passes no lease or checkpoint mode: Settings' defaults (never the
# environment: a worker or the CLI passes its Settings' values, so runners and the recovery scanner
# agree on the lease).
DEFAULT_LEASE_SECONDS = Settings.lease_seconds
DEFAULT_CHECKPOINTS = Settings.checkpoints


class PayloadTooLarge(SmqError, ValueError):
    """An execution input above the configured limit; nothing was written."""


class InvalidPayload(SmqError, ValueError):
    """A payload smq cannot store (a NUL character: PostgreSQL's JSONB refuses it)."""


class ChainError(SmqError, ValueError):
    """A chained start whose source cannot provide an input."""


class SourceNotReady(ChainError):
    """The source execution has no final output to chain from (it did not succeed, or has not ended)."""


@dataclass(frozen=True)
class StartRequest:
    """Everything needed to start one execution. Plain JSON, so it can cross a queue unchanged."""

    state_machine_id: str
    input: Any = None
    name: str | None = None
    version: int | None = None
    source_execution_id: str | None = None
    source_state_name: str | None = None
    transformer: str | None = None
    index: int | None = None  # its position in the batch that starts it (kept, shown)
    tags: dict[str, str] | None = None  # user keys and values (kept, shown, filterable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_input(repository: Repository, request: StartRequest) -> Any:
    """The input itself, or (chained) the source's final output / named state output, transformed."""
    if request.source_execution_id is None:
        if request.source_state_name is not None or request.transformer is not None:
            raise ChainError("source_state_name and transformer need a source_execution_id")
        return {} if request.input is None else request.input
    if request.input is not None:
        raise ChainError("a chained start takes its input from the source execution; do not also give input")
    source = repository.get_execution(request.source_execution_id)
    if request.source_state_name is not None:
        value = repository.last_output_of_state(source.execution_id, request.source_state_name)
    elif source.status != SUCCEEDED:
        raise SourceNotReady(
            f"source execution {source.execution_id} is {source.status}: only a SUCCEEDED execution has a final "
            "output (chain from a named state with source_state_name instead)"
        )
    else:
        value = source.output
    return apply_transformer(request.transformer, value)


# A NUL character in JSON text: `\u0000` after an even number of backslashes (zero included). After an
# odd number it is an escaped backslash followed by the five characters `u0000`, a valid string.
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_payload(value: Any, limit: int | None, what: str) -> None:
    """Refuse, before anything is written, a payload above the limit or one no backend can store."""
    text = compact(value)
    if "\\u0000" in text and _ESCAPED_NUL.search(text):
        raise InvalidPayload(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    if limit is None:
        return
    size = len(text.encode("utf-8"))
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes, above the limit of {limit} bytes (SMQ_PAYLOAD_LIMIT)")


def start_execution(
    repository: Repository,
    request: StartRequest,
    *,
    handlers: HandlerRegistry | None = None,
    payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT,
    checkpoints: str | None = None,
    queue: str | None = None,
    lease_seconds: float | None = None,
    defer_held: bool = False,
    outage_budget: float = 0,
    identity: AwsIdentity | None = None,
    observer: Observer | None = None,
    **runtime_options: Any,
) -> ExecutionRecord:
    """Create (or find) the execution named in `request` and run it to its end in this process.

    `queue` (a worker's: the queue the task came from) is recorded with a new execution, so its later
    continuations (after a park, a crash, a redrive) go back to that queue. A new execution is leased
    to this process from its first write; an existing one is run only if its lease can be taken (see
    `resume_execution`).
    With checkpoints at boundaries (the default), an execution whose first state is side-effect free
    is not written until its first checkpoint, which inserts it with the states it has run.
    `lease_seconds` and `checkpoints` default to Settings' defaults (a worker or the CLI passes its
    own Settings' values). `observer` hears of its creation, steps and end (smq.execution.observer)."""
    plan = RunPlan.of(handlers, queue, lease_seconds, checkpoints, defer_held, outage_budget, observer)
    runtime_options["payload_limit"] = payload_limit
    for _attempt in range(3):
        record, machine, created = prepare_execution(
            repository,
            request,
            handlers=handlers,
            payload_limit=payload_limit,
            write=not plan.coalesce,
            queue=queue,
            lease_seconds=plan.lease_seconds,
            identity=identity,
        )
        if record.finished:
            return record
        if created:
            plan.observer.started(record)
        try:
            if created is None:
                return run_new_execution(
                    repository,
                    record,
                    machine,
                    plan,
                    latest_guard=request.version is None,
                    **runtime_options,
                )
            # Inserted under this process's lease, or just taken over.
            claimed = created or held_here(record)
            return _run(repository, record, machine, plan, claimed, runtime_options)
        except StaleDefinition:
            continue  # a newer version was put while this run used the cached one: plan it again
    raise SmqError(f"state machine {request.state_machine_id!r} keeps changing; could not start")


def prepare_execution(
    repository: Repository,
    request: StartRequest,
    *,
    handlers: HandlerRegistry | None = None,
    payload_limit: int | None = DEFAULT_PAYLOAD_LIMIT,
    write: bool = True,
    queue: str | None = None,
    lease_seconds: float = 0,
    identity: AwsIdentity | None = None,
    parent_id: str | None = None,
) -> tuple[ExecutionRecord, StateMachine, bool | None]:
    """Validate everything, then write the RUNNING execution (or find the existing one). Runs nothing.

    Returns (record, machine, created): created is False when an execution of that name already existed.
    With `write=False`, an execution whose first state is side-effect free is returned unwritten, with
    created None: `run_new_execution` inserts it with its first checkpoint.
    """
    uses_latest = request.version is None
    for attempt in range(2):
        try:
            machine, version = repository.state_machine(
                request.state_machine_id, request.version, cached_latest=uses_latest and attempt == 0
            )
            machine.check_handlers(handlers if handlers is not None else default_registry)
            execution_input = resolve_input(repository, request)
            check_payload(execution_input, payload_limit, "the execution input")
        except SmqError:
            # Starting a name again returns that execution, even if the request would no longer pass
            # (a changed source, a smaller limit): looked up only here, off the fast path.
            existing = (
                repository.find_execution(request.state_machine_id, request.name) if request.name else None
            )
            if existing is None:
                raise
            machine, _ = repository.state_machine(existing.state_machine_id, existing.version)
            return existing, machine, False
        execution_id = str(uuid.uuid4())
        cursor = machine.begin(
            execution_input,
            name=request.name or execution_id,
            execution_id=execution_id,
            identity=identity,
            parent_id=parent_id,
        )
        record = new_execution_record(
            cursor,
            version=version,
            source_execution_id=request.source_execution_id,
            source_state_name=request.source_state_name,
            transformer=request.transformer,
            queue=queue,
            lease_owner=process_owner(),
            lease_seconds=lease_seconds,
            index=request.index,
            tags=request.tags,
        )
        if not write and starts_side_effect_free(machine.machine.states, cursor.state):
            return record, machine, None
        try:
            record, created = repository.insert_execution(
                record, latest_guard=uses_latest, lease_seconds=lease_seconds
            )
        except StaleDefinition:
            continue  # a newer version was put by another process: compile it and try again
        break
    else:
        raise SmqError(f"state machine {request.state_machine_id!r} keeps changing; could not start")
    if record.version != version:
        machine, _ = repository.state_machine(record.state_machine_id, record.version)
    return record, machine, created


def resume_execution(
    repository: Repository,
    record: ExecutionRecord,
    *,
    machine: StateMachine | None = None,
    handlers: HandlerRegistry | None = None,
    queue: str | None = None,
    lease_seconds: float | None = None,
    checkpoints: str | None = None,
    claimed: bool = False,
    defer_held: bool = False,
    outage_budget: float = 0,
    observer: Observer | None = None,
    **runtime_options: Any,
) -> ExecutionRecord:
    """Drive a RUNNING execution from its last checkpoint until it ends or parks, checkpointing every
    step that has an effect (see `smq.execution.checkpoints`).

    While it runs this process holds its lease (renewed in the background), so the recovery scanner
    leaves it alone. When it parks (a Message state, a callback task, a long Wait) it becomes WAITING
    with its wait row, and its continuation will later be enqueued on `queue` (default: the queue
    recorded with the execution, else "default"). A WAITING or PAUSED
    execution is returned as it is: only a message, a timer or an operator makes it RUNNING again.

    Unless this process already holds its lease (`claimed`: it has just created it), the lease is taken
    first, so two deliveries of one execution never run it at once; when another live process holds it,
    its record is returned as it is (or, with `defer_held`, ExecutionHeld is raised, for a worker to
    check again later). `outage_budget`: seconds a checkpoint the database cannot take is retried,
    results kept, before the run gives up (see CheckpointWriter). `lease_seconds` and `checkpoints`
    default to Settings' defaults."""
    plan = RunPlan.of(handlers, queue, lease_seconds, checkpoints, defer_held, outage_budget, observer)
    return _run(repository, record, machine, plan, claimed, runtime_options)


def run_new_execution(
    repository: Repository,
    record: ExecutionRecord,
    machine: StateMachine,
    plan: RunPlan,
    *,
    latest_guard: bool,
    **runtime_options: Any,
) -> ExecutionRecord:
    """Run an execution not written yet (`prepare_execution(..., write=False)`: its first state is
    side-effect free), leased to this process from the start: its first checkpoint inserts it with the
    states it has run, guarded (`latest_guard`) against a newer version of its definition
    (StaleDefinition). If another delivery inserted it first, that one is run from its checkpoint."""
    return _run(
        repository, record, machine, plan, True, runtime_options, insert_first=True, latest_guard=latest_guard
    )


def _run(
    repository: Repository,
    record: ExecutionRecord,
    machine: StateMachine | None,
    plan: RunPlan,
    claimed: bool,
    runtime_options: dict[str, Any],
    *,
    insert_first: bool = False,
    latest_guard: bool = False,
) -> ExecutionRecord:
    """`resume_execution` with its options in `plan`; with `insert_first`, `run_new_execution`.

    What is logged meanwhile names the execution (`smq.logs.execution_context`, its state kept current
    step by step); where this run ends it, or parks it, one line says so (`log_end`)."""
    if record.finished or record.status in (WAITING, PAUSED):
        return record
    from smq.execution.children import with_children  # it starts executions with this module

    runtime_options = with_children(repository, plan, runtime_options)
    with execution_run(
        execution_id=record.execution_id,
        execution_name=record.name,
        state_machine_id=record.state_machine_id,
        state=record.current_state,
        state_attempt=(record.cursor or {}).get("attempt"),
        queue=plan.queue or record.queue,
    ) as context:
        seconds = plan.lease_seconds
        if not claimed and seconds > 0:
            try:
                taken = claim(repository.single_statement_engine, record.execution_id, seconds)
                if taken is None:
                    return repository.get_execution(record.execution_id)  # no longer RUNNING
                record = replace(record, lease_owner=taken.owner, lease_expires_at=taken.expires_at)
                if taken.taken_from is not None:
                    plan.observer.taken_over(record, taken.taken_from)
            except ExecutionHeld:
                if plan.defer_held:
                    raise
                return repository.get_execution(record.execution_id)
        if record.cursor is None:
            raise SmqError(
                f"execution {record.execution_id} is {record.status} but has no checkpoint to resume from"
            )
        if machine is None:
            machine, _ = repository.state_machine(record.state_machine_id, record.version)
        with plan.observer.run(record, written=not insert_first):
            return _drive(
                repository, record, machine, plan, context, runtime_options, insert_first, latest_guard
            )


def _drive(
    repository: Repository,
    record: ExecutionRecord,
    machine: StateMachine,
    plan: RunPlan,
    context: dict[str, Any],
    runtime_options: dict[str, Any],
    insert_first: bool,
    latest_guard: bool,
) -> ExecutionRecord:
    """The run itself, once this process may run `record`: resume its cursor, checkpoint every step,
    and record how it ended or where it parked."""
    assert record.cursor is not None
    cursor = Cursor.from_dict(restore_inputs(repository.engine, record.cursor, record.input))
    start_time = cursor.execution.start_time
    seconds = plan.lease_seconds
    observer = plan.observer
    writer = CheckpointWriter(
        repository,
        record,
        machine.machine.states,
        start_time,
        coalesce=plan.coalesce,
        insert_first=insert_first,
        latest_guard=latest_guard,
        lease_seconds=seconds,
        outage_budget=plan.outage_budget,
        on_insert=observer.started if insert_first and observer is not NOOP else None,
    )
    lease = (
        lease_keeper(repository.engine, seconds).hold(record.execution_id) if seconds > 0 else nullcontext()
    )

    def on_step(step: Step) -> None:
        following = step.cursor
        if following is not None:  # where the execution goes next: what later lines name
            context["state"], context["state_attempt"] = following.state, following.attempt
        writer(step)
        observer.step(record, step)

    branches = ExecutionBranches(repository.engine, record.execution_id)
    try:
        with lease:
            result = machine.resume(
                cursor, handlers=plan.handlers, on_step=on_step, branch_rows=branches, **runtime_options
            )
        if result.status in (WAITING, "RUNNING"):
            writer.flush()  # nothing waits before a park; a run stopped early may leave steps
        elif not writer.ended:
            # The driver itself ended it (execution timeout, abort, transition limit): record that too,
            # with any steps still waiting.
            writer.write(Step([], status=result.status, error=result.error, cause=result.cause))
    except CheckpointConflict:
        # Another process is running (or has finished) this execution; its record is the truth.
        return repository.get_execution(record.execution_id)
    except Superseded as exc:
        # Another delivery created this execution first: carry on with that one, from its checkpoint.
        return _run(repository, exc.existing, None, plan, held_here(exc.existing), runtime_options)
    except Unstorable:
        return _ended(writer.result(), observer)
    except Exception:
        # The run stops here and its delivery will be retried, maybe by another process: let go of the
        # lease now so the retry resumes from the last checkpoint at once, not after the lease expires.
        if seconds > 0:
            let_go_if_idle(repository.engine, record.execution_id)
        raise
    had_branches = fanout_pending((record.cursor or {}).get("pending")) is not None
    if result.status not in (WAITING, "RUNNING") and had_branches:
        # Its Parallel or Map moved on while other branches still waited: their answers are moot now.
        WaitStore(repository.engine).cancel_branch_waits(record.execution_id, branches.applied_indices)
    elif rows_summary((record.cursor or {}).get("pending")) is not None and (
        result.cursor is None or rows_summary(result.cursor.pending) is None
    ):
        # Its fan-out left rows mode (ended, or keeps its progress in the cursor now): drop the rows.
        WaitStore(repository.engine).end_branch_rows(record.execution_id, branches.applied_indices)
    if result.status == WAITING:
        assert result.cursor is not None
        # The parked cursor is the one just checkpointed: record what it waits for and let go of it.
        timeout = machine.machine.timeout_seconds
        deadline = start_time + timeout if timeout is not None else None
        park_queue = plan.queue or record.queue or "default"
        parked = WaitStore(repository.engine).park(
            record.execution_id,
            writer.seen,
            result.cursor.to_dict(),
            park_queue,
            deadline=deadline,
            had_branches=had_branches,
        )
        if parked == DELIVERED:
            # Answers for its branches came while it ran: they are in its cursor now, and it is still
            # this process's to run.
            again = repository.get_execution(record.execution_id)
            return _run(repository, again, machine, plan, True, runtime_options)
        if parked != PARKED:
            return repository.get_execution(record.execution_id)
        # As written, parked: not read back (a Map's input can be large, and this runs on every answer).
        current = replace(writer.result(), status=WAITING, lease_owner=None, lease_expires_at=None)
        return _ended(current, observer, waiting_for(result.cursor.to_dict()))
    ended = _ended(writer.result(), observer)
    if cursor.execution.parent_id is not None:
        from smq.execution.children import ended_child

        ended_child(runtime_options, ended)  # a nested execution: its parent goes on now
    return ended


def _ended(record: ExecutionRecord, observer: Observer, waiting: str | None = None) -> ExecutionRecord:
    """`record`, after the line saying how this run left it (ended, or parked: `waiting`), told to
    the observer too."""
    if record.finished or (waiting is not None and record.status == WAITING):
        log_end(log, ended_fields(record, waiting_for=waiting))
        observer.ended(record, waiting)
    return record


def waiting_for(cursor: dict[str, Any]) -> str:
    """What a parked cursor waits for, in a few words (never a payload, never a task token)."""
    pending = cursor.get("pending") or {}
    kind = pending.get("kind")
    if kind == "message":
        value = compact(pending.get("value"))
        return f"message {pending.get('key')}={value if len(value) <= 100 else value[:100] + '...'}"
    if kind == "callback":
        return "a callback (task token)"
    if cursor.get("not_before") is None:
        return "its branches"
    moment = datetime.fromtimestamp(cursor["not_before"], UTC).isoformat(timespec="seconds")
    return f"a .sync job (next check {moment})" if kind == "poll" else f"a timer until {moment}"


def held_here(record: ExecutionRecord) -> bool:
    """Does this process hold a live lease on `record` (just taken over, or its own) that no thread of
    it is using? Then it may run it without claiming it again."""
    expires = record.lease_expires_at
    return (
        record.lease_owner == process_owner()
        and expires is not None
        and expires > datetime.now(UTC)
        and not running_here(record.execution_id)
    )


@dataclass(frozen=True)
class RunPlan:
    """How this process runs an execution, the same from its first step to where it ends or parks
    (and for the run it carries on with, after a superseded insert or answers that came while it ran).

    `lease_seconds` 0 runs it without a lease; `checkpoints` is the SMQ_CHECKPOINTS mode (BOUNDARIES:
    side-effect-free steps are written with the next one)."""

    handlers: HandlerRegistry | None = None
    queue: str | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    checkpoints: str = DEFAULT_CHECKPOINTS
    defer_held: bool = False
    outage_budget: float = 0
    observer: Observer = NOOP

    @classmethod
    def of(
        cls,
        handlers: HandlerRegistry | None = None,
        queue: str | None = None,
        lease_seconds: float | None = None,
        checkpoints: str | None = None,
        defer_held: bool = False,
        outage_budget: float = 0,
        observer: Observer | None = None,
    ) -> RunPlan:
        """The plan for the entry points' options (None: the default); a checkpoint mode smq does not
        know raises ValueError."""
        mode = DEFAULT_CHECKPOINTS if checkpoints is None else checkpoints
        if mode not in CHECKPOINT_MODES:
            raise ValueError(f"checkpoints must be one of {', '.join(CHECKPOINT_MODES)}, got {mode!r}")
        seconds = DEFAULT_LEASE_SECONDS if lease_seconds is None else lease_seconds
        return cls(handlers, queue, seconds, mode, defer_held, outage_budget, observer or NOOP)

    @property
    def coalesce(self) -> bool:
        return self.checkpoints == BOUNDARIES
